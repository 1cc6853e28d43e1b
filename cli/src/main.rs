//! `cryptpeft`: one command for every role and tool of the toolkit.

mod baselines;
mod cost;
#[cfg(feature = "train")]
mod demo;
#[cfg(feature = "experiments")]
mod experiment;
mod experiments;
mod load;
mod precision;
#[cfg(feature = "train")]
mod random_backbone;
mod rounds;
mod say;
mod secure;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cryptpeft",
    version,
    about = "Private inference with one-way (OWC) adapters"
)]
struct Cli {
    /// More output on stderr: -v one line per session (server, client), -vv every
    /// dealer request.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Search adapters: Pareto fronts of accuracy against private latency per network
    /// (the same as `cryptpeft-search`; the toolkit's main job).
    #[cfg(feature = "train")]
    Search(cryptpeft_search::cli::SearchArgs),
    /// Train an adapter, export it, and classify test images privately (the main job).
    #[cfg(feature = "train")]
    Demo(demo::DemoArgs),
    /// Fine-tune an adapter (or a baseline) from YAML or flags.
    #[cfg(feature = "train")]
    Train(demo::TrainArgs),
    /// Price an adapter's plan: bytes, rounds, predicted seconds per step.
    Cost(cost::CostArgs),
    /// Measure this machine's per-operation throughputs for the cost model.
    Calibrate(cost::CalibrateArgs),
    /// Run the dealer that hands out correlated randomness.
    Dealer(secure::DealerArgs),
    /// Make a deployment's CA and the dealer's and servers' TLS certificates.
    Keys(secure::KeysArgs),
    /// Serve a checkpoint to clients.
    Serve(secure::ServeArgs),
    /// Drop a registered model at the dealer (with its server's certificate).
    Unregister(secure::UnregisterArgs),
    /// Run one private inference as the client.
    Infer(secure::InferArgs),
    /// Many concurrent clients against a dealer and a server process: failures,
    /// wrong predictions, throughput, peak memory; then with clients abandoning.
    LoadTest(load::LoadArgs),
    /// Run dealer, server and client over loopback TCP on random weights and report costs.
    BenchSecure(secure::BenchSecureArgs),
    /// Microbenchmark each protocol at ViT-B/16 shapes under none, lan, wan.
    BenchProtocols(secure::BenchProtocolsArgs),
    /// Measure the paper's 20 selected configurations securely (lan, wan; affine, LayerNorm).
    PaperConfigs(experiments::PaperConfigsArgs),
    /// Rounds beside the dependency-depth bound of the paper's configurations, the
    /// search space's kinds and the baselines, from their plans (no run).
    Rounds(rounds::RoundsArgs),
    /// Where a checkpoint's fixed-point error comes from: the plan in f64 with the
    /// weights, the hidden states or the truncated wires rounded, each against the
    /// reference, and the weights whose rounding costs the most (no protocol runs).
    Precision(precision::PrecisionArgs),
    /// CryptPEFT's adapters against SFT-1/2, LoRA and AdaptFormer under MPC at ViT-B/16.
    Baselines(baselines::BaselinesArgs),
    /// Run one of the paper's comparisons from experiments/NAME.yaml into results/NAME/.
    #[cfg(feature = "experiments")]
    Experiment(experiment::ExperimentArgs),
    /// What TLS and exact truncation cost: bytes, rounds, seconds beside plaintext links
    /// with local truncation, for the paper's adapters on lan and wan.
    SecurityCost(experiments::SecurityCostArgs),
    /// Write a checkpoint with random weights of trained-like scale.
    RandomCheckpoint(secure::RandomCheckpointArgs),
    /// Write random hidden states for a checkpoint (a stand-in for the client's backbone).
    RandomHidden(secure::RandomHiddenArgs),
    /// Write a freshly initialised backbone (torchvision layout) to time the client.
    #[cfg(feature = "train")]
    RandomBackbone(random_backbone::RandomBackboneArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::new()
        .filter_level(match cli.verbose {
            0 => log::LevelFilter::Warn,
            1 => log::LevelFilter::Info,
            _ => log::LevelFilter::Debug,
        })
        .format_timestamp_millis()
        .init();
    let result = match cli.cmd {
        #[cfg(feature = "train")]
        Cmd::Search(a) => cryptpeft_search::cli::main(a).map_err(|e| e.to_string()),
        #[cfg(feature = "train")]
        Cmd::Demo(a) => demo::demo(a),
        #[cfg(feature = "train")]
        Cmd::Train(a) => demo::train(a),
        Cmd::Cost(a) => cost::run(a),
        Cmd::Calibrate(a) => cost::calibrate(a),
        Cmd::Dealer(a) => secure::dealer(a),
        Cmd::Keys(a) => secure::keys(a),
        Cmd::Serve(a) => secure::serve(a),
        Cmd::Unregister(a) => secure::unregister(a),
        Cmd::Infer(a) => secure::infer(a),
        Cmd::BenchSecure(a) => secure::bench_secure(a),
        Cmd::LoadTest(a) => load::load_test(a),
        Cmd::BenchProtocols(a) => secure::bench_protocols(a),
        Cmd::PaperConfigs(a) => experiments::paper_configs(a),
        Cmd::Rounds(a) => rounds::rounds(a),
        Cmd::Precision(a) => precision::precision(a),
        Cmd::Baselines(a) => baselines::run(a),
        #[cfg(feature = "experiments")]
        Cmd::Experiment(a) => experiment::run(a),
        Cmd::SecurityCost(a) => experiments::security_cost(a),
        Cmd::RandomCheckpoint(a) => secure::random_checkpoint(a),
        Cmd::RandomHidden(a) => secure::random_hidden(a),
        #[cfg(feature = "train")]
        Cmd::RandomBackbone(a) => random_backbone::random_backbone(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

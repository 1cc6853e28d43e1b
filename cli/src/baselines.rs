//! `baselines`: CryptPEFT's adapters against the paper's baselines (SFT of the last 1 and
//! 2 layers, PEFT-LoRA, PEFT-AdaptFormer) at ViT-B/16, all under this project's MPC, in
//! one run: bytes, rounds, seconds and the speedup of each adapter over each baseline.

use crate::say::say;
use std::path::PathBuf;

use clap::Args;
use cryptpeft_cost_model::{cost, Constants};
use cryptpeft_deploy::loopback::{self, SecureBench};
use cryptpeft_private_eval::baseline::{Baseline, BaselineModel};
use cryptpeft_private_eval::hidden;
use cryptpeft_private_eval::plan::lower::lower;
use cryptpeft_types::{BackboneSpec, NetworkProfile};

use crate::secure::ProtocolArgs;

#[derive(Args)]
pub struct BaselinesArgs {
    /// Adapters (h,r,s) measured against the baselines.
    #[arg(long, value_delimiter = ';', default_value = "1,300,1;2,120,2")]
    pub(crate) adapters: Vec<String>,
    /// Baselines run end to end (the others are only priced). LoRA's and AdaptFormer's
    /// dealer material (about 29 GB a session at ViT-B/16) streams during the online
    /// phase; their runs peak near 15 GB of memory.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sft-1,sft-2,lora,adaptformer"
    )]
    pub(crate) measure: Vec<Baseline>,
    #[arg(long, value_delimiter = ',', default_value = "lan,wan")]
    pub(crate) networks: Vec<NetworkProfile>,
    #[arg(long, default_value_t = 3)]
    pub(crate) repeat: usize,
    /// Runs of LoRA and AdaptFormer (whole backbones under MPC, minutes each).
    #[arg(long, default_value_t = 1)]
    pub(crate) deep_repeat: usize,
    #[command(flatten)]
    pub(crate) protocol: ProtocolArgs,
    #[arg(long, default_value = "results/baselines.csv")]
    pub(crate) out: PathBuf,
}

/// One model under one network.
struct Row {
    network: String,
    model: String,
    measured: Option<SecureBench>,
    predicted_bytes: u64,
    predicted_rounds: u64,
    predicted_s: f64,
    offline_bytes: u64,
}

impl Row {
    /// Seconds compared in speedups: measured where both sides ran, else predicted.
    fn seconds(&self) -> f64 {
        self.measured
            .as_ref()
            .map_or(self.predicted_s, |b| b.online_s)
    }
}

pub fn run(a: BaselinesArgs) -> Result<(), String> {
    let bb = BackboneSpec::vit_b16();
    let opts = a.protocol.lower();
    // Every end-to-end run's memory, before the first: later, memory this process freed
    // but still holds would count against it.
    for &kind in &a.measure {
        let sym = BaselineModel::symbolic(kind, bb.clone(), 100)?;
        loopback::check_memory(
            &kind.to_string(),
            &sym.lower(opts).map_err(|e| e.to_string())?.0,
        )?;
    }
    let mut rows: Vec<Row> = Vec::new();
    match measure(&a, &bb, &mut rows) {
        Ok(()) => write_csv(&a.out, &rows),
        Err(e) if rows.is_empty() => Err(e),
        Err(e) => {
            let partial = a.out.with_extension("partial.csv");
            write_csv(&partial, &rows)?;
            Err(format!(
                "{e} (the {} rows before are in {})",
                rows.len(),
                partial.display()
            ))
        }
    }
}

/// Measures (or prices) every row into `rows`, stopping at the first error.
fn measure(a: &BaselinesArgs, bb: &BackboneSpec, rows: &mut Vec<Row>) -> Result<(), String> {
    let consts = Constants::shipped();
    let opts = a.protocol.lower();
    for profile in &a.networks {
        for adapter in &a.adapters {
            let spec = crate::experiments::parse_adapter(adapter, bb)?;
            let (model, x) = crate::experiments::paper_adapter(spec.clone(), bb);
            let (plan, _) = lower(&model, opts).map_err(|e| e.to_string())?;
            let b = loopback::bench_secure(&model, &x, profile.clone(), a.repeat, true, opts)
                .map_err(|e| e.to_string())?;
            rows.push(row(profile, spec.label(), Some(b), &plan, &consts));
            report(rows.last().unwrap());
        }
        for kind in Baseline::PAPER {
            let sym = BaselineModel::symbolic(kind, bb.clone(), 100)?;
            let (plan, _) = sym.lower(opts).map_err(|e| e.to_string())?;
            let measured = match a.measure.contains(&kind) {
                true => {
                    let m = BaselineModel::random(kind, bb.clone(), 100, 5)?;
                    let x = hidden::random(1, bb.tokens(), bb.hidden_dim, 17);
                    let repeat = match kind {
                        Baseline::Sft(_) => a.repeat,
                        _ => a.deep_repeat,
                    };
                    Some(
                        loopback::bench_baseline(&m, &x, profile.clone(), repeat, true, opts)
                            .map_err(|e| e.to_string())?,
                    )
                }
                false => None,
            };
            rows.push(row(profile, kind.to_string(), measured, &plan, &consts));
            report(rows.last().unwrap());
        }
    }
    Ok(())
}

fn row(
    profile: &NetworkProfile,
    model: String,
    measured: Option<SecureBench>,
    plan: &cryptpeft_private_eval::plan::SecurePlan,
    consts: &Constants,
) -> Row {
    let c = cost(plan, profile, consts);
    Row {
        network: profile.name.clone(),
        model,
        measured,
        predicted_bytes: c.online_bytes,
        predicted_rounds: c.rounds,
        predicted_s: c.predicted_online_s,
        offline_bytes: c.offline_bytes,
    }
}

fn report(r: &Row) {
    match &r.measured {
        Some(b) => eprintln!(
            "{} {}: {} B, {} rounds, {:.3} s measured (predicted {:.3} s), max |logit err| {:.1e}",
            r.network,
            r.model,
            b.online_bytes,
            b.rounds,
            b.online_s,
            r.predicted_s,
            b.max_abs_logit_err
        ),
        None => eprintln!(
            "{} {}: {} B, {} rounds, {:.3} s predicted (not run)",
            r.network, r.model, r.predicted_bytes, r.predicted_rounds, r.predicted_s
        ),
    }
}

fn write_csv(out: &std::path::Path, rows: &[Row]) -> Result<(), String> {
    let adapters: Vec<&Row> = rows.iter().filter(|r| r.model.starts_with('h')).collect();
    let mut names: Vec<&str> = Vec::new();
    for r in &adapters {
        if !names.contains(&r.model.as_str()) {
            names.push(&r.model);
        }
    }
    let mut head = "network,model,basis,repeat,online_bytes,rounds,online_s,material_s,predicted_online_s,offline_bytes,max_abs_logit_err,crypten_bytes,crypten_rounds,crypten_wan_s".to_string();
    for n in &names {
        head.push_str(&format!(",speedup_of_{n}"));
    }
    let mut lines = vec![head];
    for r in rows {
        let (basis, repeat, bytes, rounds, secs, err) = match &r.measured {
            Some(b) => (
                "measured",
                b.repeat.to_string(),
                b.online_bytes,
                b.rounds,
                format!("{:.4},{:.4}", b.online_s, b.material_s),
                format!("{:.2e}", b.max_abs_logit_err),
            ),
            None => (
                "predicted",
                String::new(),
                r.predicted_bytes,
                r.predicted_rounds,
                ",".to_string(),
                String::new(),
            ),
        };
        let cr = cryptpeft_cost_model::crypten_reference(&r.model);
        let mut line = format!(
            "{},{},{basis},{repeat},{bytes},{rounds},{secs},{:.4},{},{err},{},{},{}",
            r.network,
            r.model,
            r.predicted_s,
            r.offline_bytes,
            cr.map_or(String::new(), |c| c.online_bytes.to_string()),
            cr.map_or(String::new(), |c| c.rounds.to_string()),
            cr.map_or(String::new(), |c| c.wan_s.to_string()),
        );
        for n in &names {
            // Measured against measured; a priced baseline against the adapter's price.
            // Blank where a run stopped before the adapter's row under this network.
            let ratio = adapters
                .iter()
                .find(|x| x.model == *n && x.network == r.network)
                .map_or(String::new(), |ad| match r.measured.is_some() {
                    true => format!("{:.2}", r.seconds() / ad.seconds()),
                    false => format!("{:.2}", r.predicted_s / ad.predicted_s),
                });
            line.push_str(&format!(",{ratio}"));
        }
        lines.push(line);
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(out, lines.join("\n") + "\n").map_err(|e| format!("{}: {e}", out.display()))?;
    say!("{}", lines.join("\n"));
    eprintln!("wrote {}", out.display());
    Ok(())
}

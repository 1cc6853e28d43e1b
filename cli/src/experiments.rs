//! `paper-configs`: the 20 adapter configurations the paper's search selected, measured
//! with the three roles over loopback TCP under lan and wan, affine norm and LayerNorm.

use crate::say::say;
use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use cryptpeft_deploy::loopback;
use cryptpeft_private_eval::arith::tensor::Mat;
use cryptpeft_private_eval::plan::shapes::{
    head_shapes, layernorm_mults, layernorm_truncs, private_terms, truncate_len,
};
use cryptpeft_private_eval::plan::{SecurePlan, Step};
use cryptpeft_private_eval::{hidden, model::OwcModel};
use cryptpeft_types::{AdapterSpec, BackboneSpec, NetworkProfile, NormKind};
use serde::Deserialize;

#[derive(Deserialize)]
struct PaperConfigs {
    configs: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, [usize; 3]>>,
    >,
}

/// The distinct `h,r,s` adapters the paper's search selected, in the file's order.
pub(crate) fn paper_specs(path: &std::path::Path) -> Result<Vec<AdapterSpec>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let pc: PaperConfigs =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out: Vec<AdapterSpec> = Vec::new();
    for &[h, r, s] in pc
        .configs
        .values()
        .flat_map(|p| p.values())
        .flat_map(|d| d.values())
    {
        let spec = AdapterSpec::paper(h, r, s);
        if !out.contains(&spec) {
            out.push(spec);
        }
    }
    Ok(out)
}

/// An adapter of the paper with random weights of trained scale (seeded by its shape)
/// and the client's random hidden states: what the benchmarks of paper adapters run.
pub(crate) fn paper_adapter(spec: AdapterSpec, bb: &BackboneSpec) -> (OwcModel, Vec<Mat>) {
    let (h, r, s) = (spec.heads, spec.rank, spec.scope);
    let model = OwcModel::random(spec, bb.clone(), 100, (h * 1000 + r * 10 + s) as u64);
    let x = hidden::random(s + 1, bb.tokens(), bb.hidden_dim, 17);
    (model, x)
}

/// `h,r,s` as the paper's adapter, checked against the backbone.
pub(crate) fn parse_adapter(s: &str, bb: &BackboneSpec) -> Result<AdapterSpec, String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse().map_err(|e| format!("--adapters {s}: {e}")))
        .collect::<Result<_, _>>()?;
    let [h, r, s] = v[..] else {
        return Err(format!("--adapters {s}: want h,r,s"));
    };
    let spec = AdapterSpec::paper(h, r, s);
    spec.validate(bb.layers).map_err(|e| e.to_string())?;
    Ok(spec)
}

#[derive(Args)]
pub struct PaperConfigsArgs {
    #[arg(long, default_value = "experiments/paper_configs.yaml")]
    configs: PathBuf,
    #[arg(long, default_value = "results/paper_configs_secure.csv")]
    out: PathBuf,
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

pub fn paper_configs(a: PaperConfigsArgs) -> Result<(), String> {
    let text =
        std::fs::read_to_string(&a.configs).map_err(|e| format!("{}: {e}", a.configs.display()))?;
    let pc: PaperConfigs =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", a.configs.display()))?;
    let mut f = std::fs::File::create(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let w = |f: &mut std::fs::File, line: String| writeln!(f, "{line}").map_err(|e| e.to_string());
    w(&mut f, "selected_for,priority,dataset,h,r,s,norm,network,online_bytes,offline_bytes_before,offline_bytes,rounds,depth_bound,online_s,offline_s,predicted_offline_s,max_abs_logit_err".into())?;
    let constants = cryptpeft_cost_model::Constants::shipped();
    let bb = BackboneSpec::vit_b16();
    for (sel_net, by_priority) in &pc.configs {
        for (priority, by_dataset) in by_priority {
            for (dataset, &[h, r, s]) in by_dataset {
                for norm in [NormKind::Affine, NormKind::LayerNorm] {
                    let spec = AdapterSpec {
                        norm,
                        ..AdapterSpec::paper(h, r, s)
                    };
                    spec.validate(bb.layers)
                        .map_err(|e| format!("{dataset} {priority}: {e}"))?;
                    let (model, x) = paper_adapter(spec.clone(), &bb);
                    for net in ["lan", "wan"] {
                        let profile: NetworkProfile = net.parse().unwrap();
                        let b = loopback::bench_secure(
                            &model,
                            &x,
                            profile,
                            a.repeat,
                            false,
                            Default::default(),
                        )
                        .map_err(|e| e.to_string())?;
                        let (plan, _) =
                            cryptpeft_private_eval::plan::lower::lower(&model, Default::default())
                                .map_err(|e| e.to_string())?;
                        // The benchmark's dealer link is unshaped loopback.
                        let predicted = cryptpeft_cost_model::offline(
                            &plan,
                            &constants,
                            &NetworkProfile::none(),
                        )
                        .seconds;
                        let line = format!(
                            "{sel_net},{priority},{dataset},{h},{r},{s},{norm},{net},{},{},{},{},{},{:.4},{:.4},{:.4},{:.2e}",
                            b.online_bytes, previous_offline_bytes(&plan), b.offline_bytes, b.rounds, b.depth_bound, b.online_s, b.offline_s, predicted, b.max_abs_logit_err
                        );
                        say!("{line}");
                        w(&mut f, line)?;
                    }
                }
            }
        }
    }
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

/// Dealer material of `plan` in the previous release's encoding (commit 3e5ce99:
/// every vector sent with a length, ReLU keys on 63 bits with two-element payloads,
/// 2,112 bytes each), both parties, as that release's `cost` reports it: the
/// "before" column of `paper-configs`.
fn previous_offline_bytes(plan: &SecurePlan) -> u64 {
    let vec = |n: usize| 8 + 8 * n as u64;
    let triple = |a: usize, b: usize, c: usize| vec(a) + vec(b) + vec(c);
    let cmp = |n: usize| 3 * vec(n) + 16 + n as u64 * 2112;
    let trunc = |n: usize| 2 * vec(n);
    let mut total = 2 * 40;
    for step in &plan.steps {
        let both = match step {
            Step::Open { open } => {
                let (r, c) = plan.opening_shape(*open);
                total += vec(r * c);
                0
            }
            Step::Linear { terms, .. } => 8 + private_terms(plan, terms).map(vec).sum::<u64>(),
            Step::HeadMatMul {
                a, b, heads, kind, ..
            } => {
                let (m, k, n) = head_shapes(plan, *a, *b, *heads, *kind);
                8 + *heads as u64 * triple(m * k, k * n, m * n)
            }
            Step::Relu { x, .. } => cmp(plan.wires[*x].rows * plan.wires[*x].cols),
            // Not in that release; its encodings of these.
            Step::Spline { x, .. } => cmp(plan.wires[*x].rows * plan.wires[*x].cols),
            Step::RowMax { x, .. } => {
                cryptpeft_private_eval::plan::shapes::rowmax_pairs(&plan.wires[*x])
                    .map(cmp)
                    .sum()
            }
            Step::Square { x, .. } => {
                let n = plan.wires[*x].rows * plan.wires[*x].cols;
                triple(n, 0, n)
            }
            Step::LayerNorm { x, z, inv_sqrt, .. } => {
                let (rows, d, c) = plan.norm_shape(*x, *z);
                let mults = layernorm_mults(plan, inv_sqrt);
                triple(rows * d, 0, rows * d)
                    + cmp(rows)
                    + 16
                    + layernorm_truncs(plan, rows, c, inv_sqrt)
                        .iter()
                        .map(|t| trunc(t.values))
                        .sum::<u64>()
                    + (0..mults)
                        .map(|i| match i + 1 == mults {
                            true => triple(rows, rows * c, rows * c),
                            false => triple(rows, rows, rows),
                        })
                        .sum::<u64>()
            }
            Step::Truncate { wires, wide } => {
                trunc(truncate_len(plan, wires) + truncate_len(plan, wide))
            }
            Step::Slice { .. } | Step::Shift { .. } | Step::Reveal { .. } => 0,
        };
        total += 2 * (8 + both);
    }
    total
}

#[derive(Args)]
pub struct SecurityCostArgs {
    /// Adapters (h,r,s at ViT-B/16) to measure.
    #[arg(long, value_delimiter = ';', default_value = "1,300,1;2,120,2")]
    adapters: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "lan,wan")]
    networks: Vec<NetworkProfile>,
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    #[arg(long, default_value = "results/security/cost.csv")]
    out: PathBuf,
}

/// What security costs: each adapter under each network, plaintext links with local
/// truncation (before) against TLS with exact truncation (now), and each change alone,
/// all measured in one run with the three roles over loopback.
pub fn security_cost(a: SecurityCostArgs) -> Result<(), String> {
    let bb = BackboneSpec::vit_b16();
    let mut lines = vec![
        "h,r,s,network,links,truncation,online_bytes,online_wire_bytes,handshake_bytes,rounds,online_s,connect_s,offline_bytes,setup_bytes,max_abs_logit_err".to_string(),
    ];
    for adapter in &a.adapters {
        let spec = parse_adapter(adapter, &bb)?;
        let (h, r, s) = (spec.heads, spec.rank, spec.scope);
        let (model, x) = paper_adapter(spec, &bb);
        for profile in &a.networks {
            for (tls, exact) in [(false, false), (true, false), (false, true), (true, true)] {
                let opts = cryptpeft_private_eval::plan::lower::LowerOptions {
                    exact_truncation: exact,
                    ..Default::default()
                };
                let b = loopback::bench_secure(&model, &x, profile.clone(), a.repeat, tls, opts)
                    .map_err(|e| e.to_string())?;
                let line = format!(
                    "{h},{r},{s},{},{},{},{},{},{},{},{:.4},{:.4},{},{},{:.2e}",
                    profile.name,
                    if tls { "tls" } else { "plain" },
                    if exact { "exact" } else { "local" },
                    b.online_bytes,
                    b.online_wire_bytes,
                    b.handshake_bytes,
                    b.rounds,
                    b.online_s,
                    b.connect_s,
                    b.offline_bytes,
                    b.setup_bytes,
                    b.max_abs_logit_err
                );
                say!("{line}");
                lines.push(line);
            }
        }
    }
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&a.out, lines.join("\n") + "\n")
        .map_err(|e| format!("{}: {e}", a.out.display()))?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

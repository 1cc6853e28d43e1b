//! `paper-configs`: the 20 adapter configurations the paper's search selected, measured
//! with the three roles over loopback TCP under lan and wan, affine norm and LayerNorm.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use cryptpeft_types::{AdapterSpec, BackboneSpec, NetworkProfile, NormKind};
use private_eval::{bench, hidden, model::OwcModel};
use serde::Deserialize;

#[derive(Deserialize)]
struct PaperConfigs {
    configs: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, [usize; 3]>>,
    >,
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
    w(&mut f, "selected_for,priority,dataset,h,r,s,norm,network,online_bytes,offline_bytes,rounds,online_s,offline_s,max_abs_logit_err".into())?;
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
                    let model = OwcModel::random(
                        spec.clone(),
                        bb.clone(),
                        100,
                        (h * 1000 + r * 10 + s) as u64,
                    );
                    let x = hidden::random(s + 1, bb.tokens(), bb.hidden_dim, 17);
                    for net in ["lan", "wan"] {
                        let profile: NetworkProfile = net.parse().unwrap();
                        let b = bench::bench_secure(
                            &model,
                            &x,
                            profile,
                            a.repeat,
                            false,
                            Default::default(),
                        )
                        .map_err(|e| e.to_string())?;
                        let line = format!(
                            "{sel_net},{priority},{dataset},{h},{r},{s},{norm},{net},{},{},{},{:.4},{:.4},{:.2e}",
                            b.online_bytes, b.offline_bytes, b.rounds, b.online_s, b.offline_s, b.max_abs_logit_err
                        );
                        println!("{line}");
                        w(&mut f, line)?;
                    }
                }
            }
        }
    }
    eprintln!("wrote {}", a.out.display());
    Ok(())
}

//! Runs one training from a YAML config and prints the report as JSON.
//!
//! `cargo run --release -p cryptpeft-train --example train -- config.yaml [report.json]`

use cryptpeft_train::{train_adapter, TrainConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: train CONFIG.yaml [REPORT.json]");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1)
    });
    let config = TrainConfig::from_yaml(&text).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1)
    });
    match train_adapter(&config) {
        Ok(report) => {
            let json = serde_json::to_string_pretty(&report).expect("report json");
            println!("{json}");
            if let Some(out) = args.get(2) {
                std::fs::write(out, json).expect("write report");
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

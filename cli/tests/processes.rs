//! The three roles as separate processes on loopback: a full inference, and a server
//! killed mid-inference making the client fail with a clear message within its timeout;
//! and output into a closed pipe ending quietly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{dealer_and_server, Roles, BIN};

fn setup(dir: &std::path::Path, adapter: &str, net: &str) -> (Roles, String) {
    let ckpt = dir.join("adapter.safetensors");
    let hid = dir.join("hidden.safetensors");
    let st = Command::new(BIN)
        .args([
            "random-checkpoint",
            "--adapter",
            adapter,
            "--backbone",
            "vit-mini",
            "--classes",
            "5",
            "--out",
        ])
        .arg(&ckpt)
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new(BIN)
        .args(["random-hidden", "--checkpoint"])
        .arg(&ckpt)
        .arg("--out")
        .arg(&hid)
        .status()
        .unwrap();
    assert!(st.success());
    let roles = dealer_and_server(&ckpt, &["--network", net]);
    (roles, hid.to_str().unwrap().to_string())
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cryptpeft-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn three_processes_run_an_inference() {
    let dir = tempdir("ok");
    let (roles, hid) = setup(&dir, "h=2,r=8,s=2", "lan");
    let out = Command::new(BIN)
        .args([
            "infer",
            "--server",
            &roles.saddr,
            "--dealer",
            &roles.daddr,
            "--tls",
            &roles.keys,
            "--hidden-states",
            &hid,
            "--network",
            "lan",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["logits"].as_array().unwrap().len(), 5);
    assert!(r["rounds"].as_u64().unwrap() >= 8);
}

#[test]
fn killed_server_makes_the_client_fail_clearly() {
    let dir = tempdir("kill");
    // A slow link (200 ms one way) so the inference is still running when the server dies.
    let net = "custom:mbit=100,delay_ms=200";
    let (mut roles, hid) = setup(&dir, "h=1,r=8,s=2", net);
    let t0 = Instant::now();
    let client = Command::new(BIN)
        .args([
            "infer",
            "--server",
            &roles.saddr,
            "--dealer",
            &roles.daddr,
            "--tls",
            &roles.keys,
            "--hidden-states",
            &hid,
            "--network",
            net,
            "--timeout",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    roles.server.0.kill().unwrap();
    let out = client.wait_with_output().unwrap();
    let took = t0.elapsed();
    eprintln!(
        "client after {took:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "client must fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains("error:") && (err.contains("closed") || err.contains("timed out")),
        "unclear message: {err}"
    );
    assert!(
        took < Duration::from_secs(12),
        "client took {took:?} to notice"
    );
}

#[test]
fn cost_json_has_the_totals_and_the_paper_model_answers() {
    let out = Command::new(BIN)
        .args([
            "cost",
            "--adapter",
            "h=1,r=300,s=1",
            "--backbone",
            "vit-b16",
            "--network",
            "wan",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in [
        "online_bytes",
        "offline_bytes",
        "rounds",
        "predicted_online_s",
        "steps",
    ] {
        assert!(!v[k].is_null(), "missing {k}");
    }
    // Exact truncation at the paper's 8 rounds: every truncation rides on an opening
    // (ReLU's, a wide opening, the reveal) but the one before each secret product.
    assert_eq!(v["rounds"].as_u64(), Some(8));
    let out = Command::new(BIN)
        .args([
            "cost",
            "--adapter",
            "h=1,r=300,s=1",
            "--network",
            "wan",
            "--local-truncation",
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rounds"].as_u64(), Some(8));
    let out = Command::new(BIN)
        .args([
            "cost",
            "--adapter",
            "h=1,r=300,s=1",
            "--network",
            "wan",
            "--model",
            "paper-linear",
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = v["predicted_online_s"].as_f64().unwrap();
    assert!((s - ((0.03828 + 0.00465 * 300.0 + 0.48139) + 0.3212)).abs() < 1e-9);
    let out = Command::new(BIN)
        .args(["cost", "--adapter", "h=7,r=300,s=1"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("`r`"));
}

/// `cryptpeft cost | head -1` and the like: output into a closed pipe ends quietly, not
/// with a panic. The reader is gone before the command writes (pricing comes first).
#[test]
fn output_into_a_closed_pipe_is_not_a_panic() {
    let mut child = Command::new(BIN)
        .args(["cost", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

//! Helpers for tests that run `cryptpeft` roles as separate processes.

#![allow(dead_code)]

#[cfg(feature = "train")]
pub mod digits;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_cryptpeft");

/// A child process killed when dropped.
pub struct Kill(pub Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `127.0.0.1:<a port that was free a moment ago>`.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Starts `cryptpeft args...` with its output discarded.
pub fn spawn(args: &[&str]) -> Kill {
    Kill(
        Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A dealer and a server running as processes, with the keys directory a client
/// passes as `--tls`.
pub struct Roles {
    pub dealer: Kill,
    pub server: Kill,
    pub daddr: String,
    pub saddr: String,
    pub keys: String,
}

/// Makes a deployment's keys next to `checkpoint` (`cryptpeft keys`), starts a dealer
/// and a server of `checkpoint` (with `extra` flags) under TLS on free ports, and waits
/// until both listen.
pub fn dealer_and_server(checkpoint: &std::path::Path, extra: &[&str]) -> Roles {
    let keys = checkpoint.with_extension("keys");
    let _ = std::fs::remove_dir_all(&keys);
    let keys = keys.to_str().unwrap().to_string();
    let st = Command::new(BIN)
        .args(["keys", "--out", &keys, "--host", "127.0.0.1"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "cryptpeft keys failed");
    let (daddr, saddr) = (free_addr(), free_addr());
    let dealer = spawn(&["dealer", "--listen", &daddr, "--tls", &keys]);
    wait_listening(&daddr);
    let mut args = vec![
        "serve",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--listen",
        &saddr,
        "--dealer",
        &daddr,
        "--tls",
        &keys,
    ];
    args.extend_from_slice(extra);
    let server = spawn(&args);
    wait_listening(&saddr);
    Roles {
        dealer,
        server,
        daddr,
        saddr,
        keys,
    }
}

/// Waits (at most 30 s) until something accepts connections on `addr`.
pub fn wait_listening(addr: &str) {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{addr} never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

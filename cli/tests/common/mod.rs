//! Helpers for tests that run `cryptpeft` roles as separate processes.

#![allow(dead_code)]

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

/// Starts a dealer and a server of `checkpoint` (with `extra` flags) on free ports and
/// waits until both listen; returns them with their addresses.
pub fn dealer_and_server(
    checkpoint: &std::path::Path,
    extra: &[&str],
) -> (Kill, Kill, String, String) {
    let (daddr, saddr) = (free_addr(), free_addr());
    let dealer = spawn(&["dealer", "--listen", &daddr]);
    wait_listening(&daddr);
    let mut args = vec![
        "serve",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--listen",
        &saddr,
        "--dealer",
        &daddr,
    ];
    args.extend_from_slice(extra);
    let server = spawn(&args);
    wait_listening(&saddr);
    (dealer, server, daddr, saddr)
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

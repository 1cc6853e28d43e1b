//! The client's cache of per-model setups `E = W - B`: megabytes a returning client
//! need not download again. Keyed by the server's address, checked by the digest the
//! server announces (SHA-256 of the plan digest and `E`), in memory and optionally in
//! a directory (one file per server, written atomically). A file that is unreadable
//! or does not hash to the announced digest is ignored and replaced.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// SHA-256 over the plan digest and the setup message, hex.
pub fn digest(plan_digest: u64, setup: &[u64]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&plan_digest.to_le_bytes());
    for v in setup {
        ctx.update(&v.to_le_bytes());
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A cached setup; one read from disk is hashed once before it is trusted.
#[derive(Clone)]
struct Entry {
    digest: String,
    setup: Arc<Vec<u64>>,
    verified: bool,
}

impl std::fmt::Debug for SetupCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetupCache")
            .field("dir", &self.dir)
            .finish()
    }
}

#[derive(Default)]
pub struct SetupCache {
    mem: Mutex<HashMap<String, Entry>>,
    dir: Option<PathBuf>,
}

impl SetupCache {
    /// A cache in memory only (one process, many inferences).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A cache also kept in `dir` (created on first store).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: Some(dir.to_path_buf()),
            ..Self::default()
        }
    }

    fn file(&self, server: &str) -> Option<PathBuf> {
        let name: String = server
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.dir.as_ref().map(|d| d.join(format!("{name}.setup")))
    }

    /// The digest held for `server`, if any (what the client announces).
    pub fn digest_for(&self, server: &str) -> Option<String> {
        if let Some(e) = self.mem.lock().expect("cache").get(server) {
            return Some(e.digest.clone());
        }
        let bytes = std::fs::read(self.file(server)?).ok()?;
        let (digest, setup) = decode(&bytes)?;
        let entry = Entry {
            digest: digest.clone(),
            setup: Arc::new(setup),
            verified: false,
        };
        self.mem.lock().expect("cache").insert(server.into(), entry);
        Some(digest)
    }

    /// The setup for `server` if it hashes to `want`.
    pub fn get(&self, server: &str, plan_digest: u64, want: &str) -> Option<Arc<Vec<u64>>> {
        let mut mem = self.mem.lock().expect("cache");
        let e = mem.get_mut(server).filter(|e| e.digest == want)?;
        if !e.verified {
            e.verified = digest(plan_digest, &e.setup) == want;
        }
        e.verified.then(|| e.setup.clone())
    }

    /// Keeps `setup` for `server`; a failure to write the file only costs a download.
    pub fn put(&self, server: &str, digest: &str, setup: Arc<Vec<u64>>) {
        if let Some(path) = self.file(server) {
            let mut bytes = digest.as_bytes().to_vec();
            bytes.push(b'\n');
            for v in setup.iter() {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| cryptpeft_types::files::write_atomic(&path, &bytes));
            if let Err(e) = written {
                log::warn!("setup cache: {}: {e}", path.display());
            }
        }
        let entry = Entry {
            digest: digest.into(),
            setup,
            verified: true,
        };
        self.mem.lock().expect("cache").insert(server.into(), entry);
    }
}

fn decode(bytes: &[u8]) -> Option<(String, Vec<u64>)> {
    let nl = bytes.iter().position(|&b| b == b'\n')?;
    let d = std::str::from_utf8(&bytes[..nl]).ok()?.to_string();
    let body = &bytes[nl + 1..];
    body.len().is_multiple_of(8).then(|| {
        let v = body
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        (d, v)
    })
}

/// Shared handle, as the client's configuration holds it.
pub type SharedSetupCache = Arc<SetupCache>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_setup_comes_back_only_under_its_digest() {
        let dir = std::env::temp_dir().join(format!("cryptpeft-setup-{}", std::process::id()));
        let setup = Arc::new(vec![1u64, 2, 3]);
        let d = digest(9, &setup);
        SetupCache::in_dir(&dir).put("127.0.0.1:7001", &d, setup.clone());
        // A new process finds it on disk.
        let c = SetupCache::in_dir(&dir);
        assert_eq!(c.digest_for("127.0.0.1:7001").as_deref(), Some(d.as_str()));
        // The digest covers the plan: a file checked against another plan fails.
        let other = SetupCache::in_dir(&dir);
        other.digest_for("127.0.0.1:7001");
        assert_eq!(other.get("127.0.0.1:7001", 8, &d), None, "other plan");
        assert_eq!(c.get("127.0.0.1:7001", 9, &d), Some(setup));
        assert_eq!(c.get("127.0.0.1:7001", 9, "beef"), None, "other digest");
        assert_eq!(c.digest_for("other:1"), None);
        // A corrupted file is not trusted.
        let f = c.file("127.0.0.1:7001").unwrap();
        let mut bytes = std::fs::read(&f).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&f, bytes).unwrap();
        let c = SetupCache::in_dir(&dir);
        assert!(c.digest_for("127.0.0.1:7001").is_some());
        assert_eq!(c.get("127.0.0.1:7001", 9, &d), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

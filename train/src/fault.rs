//! Kill points for the crash tests: with `CRYPTPEFT_SEARCH_KILL_AT=<point>[:<n>]` in the
//! environment, the process sends itself SIGKILL the `n`-th time (default 1) it reaches
//! `<point>` (`cache`, `train`, `epoch`, `between`, `commit`, `output`). Without it, nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub const VAR: &str = "CRYPTPEFT_SEARCH_KILL_AT";

static TARGET: OnceLock<Option<(String, usize)>> = OnceLock::new();
static HITS: AtomicUsize = AtomicUsize::new(0);

fn target() -> &'static Option<(String, usize)> {
    TARGET.get_or_init(|| {
        let v = std::env::var(VAR).ok()?;
        let (p, n) = v.split_once(':').unwrap_or((&v, "1"));
        Some((p.to_string(), n.parse().unwrap_or(1)))
    })
}

/// Whether the environment arms `name` (so callers pay for nothing otherwise).
pub fn armed(name: &str) -> bool {
    target().as_ref().is_some_and(|(p, _)| p == name)
}

/// Marks `name`; dies here if the environment says so.
pub fn point(name: &str) {
    if let Some((p, n)) = target() {
        if p == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

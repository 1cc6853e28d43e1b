//! How much memory this machine has free: work that cannot fit is refused before it
//! starts, with a message, rather than killed by the kernel halfway.

/// `MemAvailable` from `/proc/meminfo`, in bytes; `None` where there is none.
pub fn available_bytes() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

//! Peak resident memory of this process, for the memory benches (one measurement per process).

use anyhow::{Context as _, Result};

/// VmHWM (the resident high-water mark) in KiB.
pub fn vm_hwm_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("no VmHWM in /proc/self/status")?;
    Ok(line.split_whitespace().nth(1).context("VmHWM value")?.parse()?)
}

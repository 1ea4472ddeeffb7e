//! Kernel time: `CLOCK_BOOTTIME` nanoseconds, which every kernel record carries, and their
//! wall-clock time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Converts kernel boot-time stamps to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock nanoseconds at boot time zero.
    offset_ns: i128,
}

impl Clock {
    pub fn new() -> Self {
        let boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128)
            .unwrap_or(0);
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0);
        Self { offset_ns: wall - boot }
    }

    pub fn wall(&self, boot_ns: u64) -> SystemTime {
        let ns = (self.offset_ns + boot_ns as i128).max(0) as u128;
        UNIX_EPOCH + Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32)
    }

    pub fn rfc3339(&self, boot_ns: u64) -> String {
        humantime::format_rfc3339_nanos(self.wall(boot_ns)).to_string()
    }

    /// Boot-time nanoseconds now.
    pub fn now_boot_ns() -> u64 {
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_close_to_now() {
        let c = Clock::new();
        let now = SystemTime::now();
        let w = c.wall(Clock::now_boot_ns());
        let diff = now.duration_since(w).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_secs(1), "{diff:?}");
        assert!(c.rfc3339(Clock::now_boot_ns()).ends_with('Z'));
    }
}

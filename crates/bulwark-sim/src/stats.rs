//! Small measurement helpers: percentiles, rounding, error tallies, and CPU
//! time and memory of a process from `/proc`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Distinct error messages kept in a result.
const MAX_ERROR_KINDS: usize = 8;
/// Linux reports process CPU time in USER_HZ ticks, 100 per second.
const USER_HZ: f64 = 100.0;

/// Nearest-rank percentile of sorted microsecond samples, in milliseconds.
pub(crate) fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    f64::from(sorted_us[i]) / 1000.0
}

/// `p50_ms`, `p99_ms`, `max_ms` of microsecond samples (sorted here).
pub(crate) fn latency_summary(us: &mut [u32]) -> Value {
    us.sort_unstable();
    json!({
        "p50_ms": round(percentile_ms(us, 50.0), 3),
        "p99_ms": round(percentile_ms(us, 99.0), 3),
        "max_ms": round(percentile_ms(us, 100.0), 3),
    })
}

pub(crate) fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (x * k).round() / k
}

/// Microseconds, saturated to `u32` (71 minutes).
pub(crate) fn micros(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Errors counted by message, keeping a few distinct messages.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    pub(crate) total: u64,
    kinds: BTreeMap<String, u64>,
}

impl Errors {
    pub(crate) fn add(&mut self, e: impl ToString) {
        self.add_n(e.to_string(), 1);
    }

    fn add_n(&mut self, e: String, n: u64) {
        self.total += n;
        if self.kinds.len() < MAX_ERROR_KINDS || self.kinds.contains_key(&e) {
            *self.kinds.entry(e).or_default() += n;
        }
    }

    pub(crate) fn merge(&mut self, other: Errors) {
        let counted: u64 = other.kinds.values().sum();
        for (k, n) in other.kinds {
            self.add_n(k, n);
        }
        self.total += other.total - counted;
    }

    /// Sets `errors` and, when there are any, `error_kinds` on `v`.
    pub(crate) fn put(&self, v: &mut Value) {
        v["errors"] = json!(self.total);
        if !self.kinds.is_empty() {
            v["error_kinds"] = json!(self.kinds);
        }
    }
}

/// CPU seconds (user + system) used so far by process `pid` (or `self`).
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Resident memory of process `pid`, KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The soft limit on open files of this process.
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// CPU use of this process and of the broker between two points in time.
pub(crate) struct CpuMeter {
    broker_pid: Option<u32>,
    start: (Option<f64>, Option<f64>),
}

impl CpuMeter {
    pub(crate) fn start(broker_pid: Option<u32>) -> Self {
        let broker = broker_pid.and_then(|p| cpu_seconds(&p.to_string()));
        CpuMeter {
            broker_pid,
            start: (cpu_seconds("self"), broker),
        }
    }

    /// `client_cpu_cores` and `broker_cpu_cores` over `secs` seconds.
    pub(crate) fn put(&self, v: &mut Value, secs: f64) {
        let cores = |now: Option<f64>, then: Option<f64>| {
            now.zip(then)
                .filter(|_| secs > 0.0)
                .map(|(b, a)| round((b - a) / secs, 2))
        };
        v["client_cpu_cores"] = json!(cores(cpu_seconds("self"), self.start.0));
        if let Some(pid) = self.broker_pid {
            v["broker_cpu_cores"] = json!(cores(cpu_seconds(&pid.to_string()), self.start.1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l: Vec<u32> = (1..=10).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&l, 50.0), 5.0);
        assert_eq!(percentile_ms(&l, 99.0), 10.0);
        assert_eq!(percentile_ms(&l, 100.0), 10.0);
        assert_eq!(percentile_ms(&[7000], 50.0), 7.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }

    #[test]
    fn error_tally_keeps_totals() {
        let mut a = Errors::default();
        for i in 0..20 {
            a.add(format!("e{i}"));
        }
        let mut b = Errors::default();
        b.add("e0");
        b.add("zz");
        a.merge(b);
        assert_eq!(a.total, 22);
        let mut v = json!({});
        a.put(&mut v);
        assert_eq!(v["errors"], 22);
        assert_eq!(v["error_kinds"]["e0"], 2);
        assert_eq!(v["error_kinds"].as_object().unwrap().len(), MAX_ERROR_KINDS);
    }

    #[test]
    fn reads_proc() {
        assert!(cpu_seconds("self").is_some());
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }
}

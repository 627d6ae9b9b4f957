//! `bulwark-bench report`: medians of repeated runs as a markdown table.
//!
//! Reads the JSON lines `health` and `est-enroll` print, groups them by
//! concurrency, and prints per concurrency the median throughput of each
//! mode, their ratio, and median latencies and CPU costs. Medians, not
//! means: the machine is shared and one noisy run should not move the
//! result.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

/// Median of `v` (mean of the middle two for an even count); NaN if empty.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[derive(Default)]
struct Runs {
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    server_ms: Vec<f64>,
    client_ms: Vec<f64>,
    other_cores: Vec<f64>,
    errors: u64,
}

impl Runs {
    fn add(&mut self, v: &Value, rate_key: &str) {
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        if let Some(r) = f(rate_key) {
            self.rate.push(r);
        }
        self.p50.extend(f("p50_ms"));
        self.p99.extend(f("p99_ms"));
        self.server_ms.extend(f("server_cpu_ms_per_op"));
        self.client_ms.extend(f("client_cpu_ms_per_op"));
        self.other_cores.extend(f("other_cpu_cores"));
        self.errors += v.get("errors").and_then(Value::as_u64).unwrap_or(0);
    }
}

fn fmt(x: f64, places: usize) -> String {
    if x.is_nan() {
        "–".into()
    } else {
        format!("{x:.places$}")
    }
}

pub(crate) fn run(file: Option<&Path>) -> Result<()> {
    let input: Box<dyn Read> = match file {
        Some(p) => Box::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => Box::new(std::io::stdin()),
    };
    let mut health: BTreeMap<u64, Runs> = BTreeMap::new();
    let mut enroll: BTreeMap<u64, Runs> = BTreeMap::new();
    for line in BufReader::new(input).lines() {
        let line = line.context("cannot read input")?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let c = v.get("concurrency").and_then(Value::as_u64).unwrap_or(0);
        match v.get("mode").and_then(Value::as_str) {
            Some("health") => health.entry(c).or_default().add(&v, "requests_per_sec"),
            Some("est-enroll") => enroll.entry(c).or_default().add(&v, "enrollments_per_sec"),
            _ => {}
        }
    }
    println!(
        "| concurrency | runs | health req/s | enroll/s | enroll ÷ health | enroll p50 ms | enroll p99 ms | health p50 ms | server CPU ms/enroll | client CPU ms/enroll | server CPU ms/health | other load, cores | errors |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut levels: Vec<u64> = health.keys().chain(enroll.keys()).copied().collect();
    levels.sort_unstable();
    levels.dedup();
    let empty = Runs::default();
    for c in levels {
        let h = health.get(&c).unwrap_or(&empty);
        let e = enroll.get(&c).unwrap_or(&empty);
        let (hr, er) = (median(h.rate.clone()), median(e.rate.clone()));
        println!(
            "| {c} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            e.rate.len().max(h.rate.len()),
            fmt(hr, 0),
            fmt(er, 0),
            fmt(er / hr, 3),
            fmt(median(e.p50.clone()), 2),
            fmt(median(e.p99.clone()), 2),
            fmt(median(h.p50.clone()), 2),
            fmt(median(e.server_ms.clone()), 3),
            fmt(median(e.client_ms.clone()), 3),
            fmt(median(h.server_ms.clone()), 3),
            fmt(median(e.other_cores.clone()), 2),
            e.errors + h.errors,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}

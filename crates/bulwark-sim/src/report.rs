//! `report`: JSON result lines of many runs → one markdown table with a
//! column per label (broker), medians per metric, and the ratio of the
//! first label to the second.
//!
//! Besides `load` results it reads `idle-memory` lines, which bench/mqtt.sh
//! writes after measuring a broker's RSS around an `idle` run.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

#[derive(Clone, Copy)]
enum Agg {
    Median,
    Max,
    Sum,
}

/// (scenario, JSON key, row name, aggregate).
const ROWS: &[(&str, &str, &str, Agg)] = &[
    (
        "connect-rate",
        "setups_per_sec",
        "mTLS setups/s",
        Agg::Median,
    ),
    ("connect-rate", "p50_ms", "setup p50, ms", Agg::Median),
    ("connect-rate", "p99_ms", "setup p99, ms", Agg::Median),
    (
        "connect-rate",
        "broker_cpu_cores",
        "broker CPU, cores",
        Agg::Median,
    ),
    ("connect-rate", "errors", "errors (all runs)", Agg::Sum),
    ("fan-in", "received_per_sec", "received msg/s", Agg::Median),
    ("fan-in", "sent_per_sec", "sent (acked) msg/s", Agg::Median),
    (
        "fan-in",
        "broker_cpu_cores",
        "broker CPU, cores",
        Agg::Median,
    ),
    ("fan-in", "losses", "QoS 1 losses (worst run)", Agg::Max),
    ("fan-in", "dropped", "QoS 0 dropped (worst run)", Agg::Max),
    ("fan-in", "errors", "errors (all runs)", Agg::Sum),
    ("fan-out", "deliveries_per_sec", "deliveries/s", Agg::Median),
    (
        "fan-out",
        "sent_per_sec",
        "published (acked) msg/s",
        Agg::Median,
    ),
    (
        "fan-out",
        "broker_cpu_cores",
        "broker CPU, cores",
        Agg::Median,
    ),
    ("fan-out", "losses", "QoS 1 losses (worst run)", Agg::Max),
    ("fan-out", "dropped", "QoS 0 dropped (worst run)", Agg::Max),
    ("fan-out", "errors", "errors (all runs)", Agg::Sum),
    ("latency", "received_per_sec", "received msg/s", Agg::Median),
    ("latency", "p50_ms", "p50, ms", Agg::Median),
    ("latency", "p99_ms", "p99, ms", Agg::Median),
    ("latency", "max_ms", "max, ms", Agg::Median),
    ("latency", "errors", "errors (all runs)", Agg::Sum),
    ("idle-memory", "up", "connections held", Agg::Median),
    (
        "idle-memory",
        "kib_per_connection",
        "broker RSS per connection, KiB",
        Agg::Median,
    ),
    (
        "idle-memory",
        "rss_before_kib",
        "broker RSS before, KiB",
        Agg::Median,
    ),
    (
        "idle-memory",
        "rss_after_kib",
        "broker RSS with all up, KiB",
        Agg::Median,
    ),
    (
        "idle-memory",
        "connects_per_sec",
        "connections opened/s",
        Agg::Median,
    ),
];

pub(crate) fn run(file: Option<&Path>, labels: &[String]) -> Result<()> {
    let mut text = String::new();
    match file {
        Some(p) => {
            text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read stdin")?;
        }
    }
    print!("{}", table(&text, labels));
    Ok(())
}

fn table(text: &str, labels: &[String]) -> String {
    // (scenario, label) -> lines
    let mut runs: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    let mut order: Vec<String> = labels.to_vec();
    for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(s), Some(l)) = (v["scenario"].as_str(), v["label"].as_str()) else {
            continue;
        };
        if !order.iter().any(|o| o == l) {
            order.push(l.to_owned());
        }
        runs.entry((s.to_owned(), l.to_owned()))
            .or_default()
            .push(v);
    }
    let ratio = order.len() >= 2;
    let mut out = String::from("| scenario | metric |");
    for l in &order {
        out.push_str(&format!(" {l} |"));
    }
    if ratio {
        out.push_str(&format!(" {} ÷ {} |", order[0], order[1]));
    }
    out.push_str(" runs |\n|---|---|");
    out.push_str(&"---:|".repeat(order.len() + usize::from(ratio) + 1));
    out.push('\n');
    for (scenario, key, name, agg) in ROWS {
        let values: Vec<Option<f64>> = order
            .iter()
            .map(|l| {
                let rs = runs.get(&(scenario.to_string(), l.clone()))?;
                let xs: Vec<f64> = rs.iter().filter_map(|v| v[key].as_f64()).collect();
                aggregate(&xs, *agg)
            })
            .collect();
        if values.iter().all(Option::is_none) {
            continue;
        }
        let counts: Vec<String> = order
            .iter()
            .map(|l| {
                runs.get(&(scenario.to_string(), l.clone()))
                    .map_or(0, Vec::len)
                    .to_string()
            })
            .collect();
        out.push_str(&format!("| {scenario} | {name} |"));
        for v in &values {
            out.push_str(&format!(" {} |", v.map_or("pending".to_owned(), fmt)));
        }
        if ratio {
            let r = match (values[0], values[1]) {
                (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                _ => "–".to_owned(),
            };
            out.push_str(&format!(" {r} |"));
        }
        out.push_str(&format!(" {} |\n", counts.join(" / ")));
    }
    out
}

fn aggregate(xs: &[f64], agg: Agg) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    Some(match agg {
        Agg::Sum => xs.iter().sum(),
        Agg::Max => xs.iter().copied().fold(f64::MIN, f64::max),
        Agg::Median => {
            let mut s = xs.to_vec();
            s.sort_by(f64::total_cmp);
            let m = s.len() / 2;
            if s.len() % 2 == 1 {
                s[m]
            } else {
                (s[m - 1] + s[m]) / 2.0
            }
        }
    })
}

/// Thousands separators above 1,000; three significant decimals below.
fn fmt(x: f64) -> String {
    if x.abs() >= 1000.0 {
        let n = x.round() as i64;
        let s = n.abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            out.insert(0, '-');
        }
        out
    } else if x == x.trunc() {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratio() {
        let text = r#"
{"scenario":"fan-in","label":"a","received_per_sec":10.0,"losses":0,"errors":0}
{"scenario":"fan-in","label":"a","received_per_sec":30.0,"losses":2,"errors":1}
{"scenario":"fan-in","label":"a","received_per_sec":20.0,"losses":0,"errors":0}
{"scenario":"fan-in","label":"b","received_per_sec":40.0,"losses":0,"errors":0}
not json
"#;
        let t = table(text, &[]);
        assert!(
            t.contains("| fan-in | received msg/s | 20 | 40 | 0.50 | 3 / 1 |"),
            "{t}"
        );
        assert!(
            t.contains("| fan-in | QoS 1 losses (worst run) | 2 | 0 |"),
            "{t}"
        );
        assert!(t.contains("| fan-in | errors (all runs) | 1 | 0 |"), "{t}");
        assert!(!t.contains("latency"));
        let t = table(text, &["b".into(), "c".into(), "a".into()]);
        assert!(
            t.contains("| fan-in | received msg/s | 40 | pending | 20 | – | 1 / 0 / 3 |"),
            "{t}"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(fmt(1234567.4), "1,234,567");
        assert_eq!(fmt(-1500.0), "-1,500");
        assert_eq!(fmt(12.25), "12.2");
        assert_eq!(fmt(0.1234), "0.123");
        assert_eq!(fmt(3.0), "3");
    }
}

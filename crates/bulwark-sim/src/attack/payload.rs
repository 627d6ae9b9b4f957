//! What simulated devices publish, as the agent would: telemetry, the
//! inventory report and the posture report (the agent's `report.rs` and
//! `posture.rs` formats), and the benign daily rhythm of telemetry.

use std::f64::consts::TAU;
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};

/// Firmware the fleet runs at the start.
pub(crate) const FIRMWARE: &str = "1.4.2";
/// Firmware after the benign update wave.
pub(crate) const FIRMWARE_UPDATED: &str = "1.5.0";
/// Firmware the `downgrade` attacker reports.
pub(crate) const FIRMWARE_DOWNGRADED: &str = "1.2.0";
/// Hardware model of every simulated device.
pub(crate) const HARDWARE_MODEL: &str = "sim-gw-1";
/// Agent version reported.
pub(crate) const AGENT_VERSION: &str = "0.1.0-sim";
/// Port the `port-scan` attacker suddenly listens on.
pub(crate) const BACKDOOR_PORT: u16 = 4444;
/// Established connections the `port-scan` attacker reports.
pub(crate) const SCAN_CONNECTIONS: usize = 400;
/// Amplitude of the daily cycle: the rate goes from 0.4× (midnight) to
/// 1.6× (noon) the device's own rate.
pub(crate) const DIURNAL_AMPLITUDE: f64 = 0.6;

/// The factor applied to a device's telemetry rate at `secs` into a day of
/// `period` seconds: `1 − A·cos(2π·secs/period)`, so 0.4 at midnight, 1.6
/// at noon, 1.0 on average.
pub(crate) fn diurnal_factor(secs: f64, period: f64) -> f64 {
    if period <= 0.0 {
        return 1.0;
    }
    1.0 - DIURNAL_AMPLITUDE * (TAU * secs / period).cos()
}

/// `devices/<id>/<suffix>`.
pub(crate) fn topic(id: &str, suffix: &str) -> String {
    format!("devices/{id}/{suffix}")
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// One telemetry reading (about 100 bytes).
pub(crate) fn telemetry(seq: u64, unix_ms: i64, rng: &mut impl Rng) -> Vec<u8> {
    json!({
        "seq": seq,
        "ts": unix_ms,
        "temp_c": (rng.random_range(180..320) as f64) / 10.0,
        "rssi": -rng.random_range(40..90),
        "uptime_s": seq,
        "load": (rng.random_range(0..300) as f64) / 100.0,
    })
    .to_string()
    .into_bytes()
}

/// The inventory report (`InventoryReport`: inventory plus `release`).
pub(crate) fn inventory(id: &str, firmware: &str) -> Vec<u8> {
    json!({
        "device_id": id,
        "firmware_version": firmware,
        "hardware_model": HARDWARE_MODEL,
        "agent_version": AGENT_VERSION,
        "active_slot": "a",
        "release": null,
    })
    .to_string()
    .into_bytes()
}

/// A device's stable network posture: what it listens on, and the few
/// peers it keeps connections to.
#[derive(Debug, Clone)]
pub(crate) struct PostureProfile {
    /// The device's own address (10.0.x.y).
    local: Ipv4Addr,
    listening: Vec<u16>,
    peers: Vec<(Ipv4Addr, u16)>,
    processes: usize,
}

impl PostureProfile {
    /// A device `index` of the fleet: sshd, sometimes a local web UI; its
    /// cloud endpoint, sometimes an NTP or update server.
    pub(crate) fn new(index: usize, rng: &mut impl Rng) -> Self {
        let local = Ipv4Addr::from(0x0a00_0000 | ((index as u32 % 65_000) + 2));
        let mut listening = vec![22];
        if rng.random_bool(0.3) {
            listening.push(8080);
        }
        let mut peers = vec![(Ipv4Addr::new(93, 184, 216, 34), 443)];
        if rng.random_bool(0.5) {
            peers.push((Ipv4Addr::new(151, 101, 1, 69), 443));
        }
        if rng.random_bool(0.3) {
            peers.push((Ipv4Addr::new(162, 159, 200, 1), 123));
        }
        PostureProfile {
            local,
            listening,
            peers,
            processes: rng.random_range(70..110),
        }
    }

    /// A posture report. `scan` adds the `port-scan` attacker's backdoor
    /// listener and [`SCAN_CONNECTIONS`] connections to distinct remote
    /// addresses (different ones in each report).
    pub(crate) fn report(&self, scan: bool, rng: &mut impl Rng) -> Vec<u8> {
        let mut listening: Vec<Value> = self
            .listening
            .iter()
            .map(|p| json!({"proto": "tcp", "addr": format!("0.0.0.0:{p}")}))
            .collect();
        let mut established: Vec<Value> = self
            .peers
            .iter()
            .enumerate()
            .map(|(i, (ip, port))| {
                json!({"proto": if *port == 123 { "udp" } else { "tcp" },
                       "local": format!("{}:{}", self.local, 40_000 + i),
                       "remote": format!("{ip}:{port}")})
            })
            .collect();
        let mut processes = self.processes + rng.random_range(0..4);
        if scan {
            listening.push(json!({"proto": "tcp", "addr": format!("0.0.0.0:{BACKDOOR_PORT}")}));
            let base: u32 = rng.random();
            for i in 0..SCAN_CONNECTIONS as u32 {
                // Distinct addresses spread over the IPv4 space, ports a scanner tries.
                let remote = Ipv4Addr::from(base.wrapping_add(i.wrapping_mul(0x0101_0107)));
                let port = [22, 23, 80, 443, 2323, 8080][i as usize % 6];
                established.push(json!({"proto": "tcp",
                    "local": format!("{}:{}", self.local, 45_000 + i),
                    "remote": format!("{remote}:{port}")}));
            }
            processes += 3;
        }
        json!({
            "listening": listening,
            "established": established,
            "process_count": processes,
            "truncated": false,
        })
        .to_string()
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn daily_cycle() {
        let p = 600.0;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(diurnal_factor(0.0, p), 0.4));
        assert!(close(diurnal_factor(300.0, p), 1.6));
        assert!(close(diurnal_factor(150.0, p), 1.0));
        assert!(close(diurnal_factor(600.0, p), 0.4));
        let mean = (0..600)
            .map(|s| diurnal_factor(f64::from(s), p))
            .sum::<f64>()
            / 600.0;
        assert!(close(mean, 1.0), "{mean}");
        assert!(
            (0..600).all(|s| (0.4 - 1e-9..=1.6 + 1e-9).contains(&diurnal_factor(f64::from(s), p)))
        );
        assert_eq!(diurnal_factor(10.0, 0.0), 1.0);
    }

    #[test]
    fn reports_have_the_agent_format() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let inv: Value = serde_json::from_slice(&inventory("dev-1", FIRMWARE)).unwrap();
        assert_eq!(inv["device_id"], "dev-1");
        assert_eq!(inv["firmware_version"], FIRMWARE);
        let profile = PostureProfile::new(3, &mut rng);
        let p: Value = serde_json::from_slice(&profile.report(false, &mut rng)).unwrap();
        assert_eq!(p["listening"][0]["addr"], "0.0.0.0:22");
        assert_eq!(p["established"][0]["remote"], "93.184.216.34:443");
        assert_eq!(p["established"][0]["local"], "10.0.0.5:40000");
        assert_eq!(p["truncated"], false);
        let s: Value = serde_json::from_slice(&profile.report(true, &mut rng)).unwrap();
        let listening = s["listening"].as_array().unwrap();
        assert!(listening.iter().any(|l| l["addr"] == "0.0.0.0:4444"));
        let remotes: std::collections::HashSet<String> = s["established"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                c["remote"]
                    .as_str()
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert!(remotes.len() > SCAN_CONNECTIONS - 5, "{}", remotes.len());
        let t: Value = serde_json::from_slice(&telemetry(5, 1, &mut rng)).unwrap();
        assert_eq!(t["seq"], 5);
    }
}

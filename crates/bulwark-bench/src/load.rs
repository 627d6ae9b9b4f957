//! The load runner: setup (not timed), C workers with one HTTPS connection
//! each, latencies, CPU use, and the JSON result line.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bulwark_client::types::{CreateEnrollToken, CreateGroup};
use bulwark_client::Client;
use bulwark_types::GroupId;
use serde_json::json;
use tokio::sync::Barrier;

use crate::Bounds;

/// Requests in flight while creating enrollment tokens (setup, not timed).
const SETUP_CONCURRENCY: usize = 16;
/// Lifetime of the benchmark's enrollment tokens.
const TOKEN_TTL_SECS: u64 = 3600;
/// Distinct error messages kept for the report.
const MAX_ERROR_KINDS: usize = 8;
/// Linux reports process CPU time in USER_HZ ticks, 100 per second.
const USER_HZ: f64 = 100.0;

/// A server to load: its loopback base URL and the CA bundle to trust.
pub(crate) struct Server {
    pub(crate) addr: String,
    pub(crate) ca: Vec<u8>,
}

impl Server {
    fn client(&self, token: Option<String>) -> Result<Client> {
        Client::new(&self.addr, token, &self.ca).context("cannot build the HTTPS client")
    }

    /// The HTTP version an identically configured reqwest client negotiates
    /// (ALPN), for the record.
    async fn http_version(&self) -> Result<String> {
        let roots = reqwest::Certificate::from_pem_bundle(&self.ca).context("CA bundle")?;
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .tls_certs_only(roots)
            .build()
            .context("probe client")?;
        let resp = http
            .get(format!("{}/v1/health", self.addr.trim_end_matches('/')))
            .send()
            .await
            .context("GET /v1/health")?;
        Ok(format!("{:?}", resp.version()))
    }
}

/// What the workers saw.
struct Outcome {
    ok: usize,
    errors: usize,
    error_kinds: BTreeMap<String, usize>,
    latencies: Vec<Duration>,
    elapsed: Duration,
    client_cpu: Option<f64>,
    server_cpu: Option<f64>,
    machine_cpu: Option<f64>,
}

/// CPU seconds (user + system) used so far by process `pid` (or `self`).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// CPU seconds all cores of the machine have been busy so far (everything
/// but idle, iowait and steal in the first line of /proc/stat).
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<f64> = line
        .split_whitespace()
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let idle = f.get(3)? + f.get(4)? + f.get(7)?;
    Some((f.iter().sum::<f64>() - idle) / USER_HZ)
}

/// Runs `op(client, i)` for every `i` in `0..b.count` on `b.concurrency`
/// workers, each with its own client (connection), warmed up with one
/// untimed `GET /v1/health` so TLS handshakes are not measured.
async fn run_workers<F, Fut>(
    server: &Server,
    b: Bounds,
    server_pid: Option<u32>,
    op: F,
) -> Result<Outcome>
where
    F: Fn(Arc<Client>, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(Barrier::new(b.concurrency + 1));
    let go = Arc::new(Barrier::new(b.concurrency + 1));
    let mut workers = Vec::with_capacity(b.concurrency);
    for _ in 0..b.concurrency {
        let client = Arc::new(server.client(None)?);
        let (next, ready, go, op) = (next.clone(), ready.clone(), go.clone(), op.clone());
        let max_time = b.max_time;
        let count = b.count;
        workers.push(tokio::spawn(async move {
            let warm = client.health().await.map_err(|e| e.to_string());
            ready.wait().await;
            go.wait().await;
            let start = Instant::now();
            let mut lat = Vec::new();
            let mut errs: Vec<String> = Vec::new();
            if let Err(e) = warm {
                errs.push(format!("warm-up: {e}"));
                return (lat, errs);
            }
            loop {
                let left = max_time.saturating_sub(start.elapsed());
                if left.is_zero() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t0 = Instant::now();
                match tokio::time::timeout(left, op(client.clone(), i)).await {
                    Ok(Ok(())) => lat.push(t0.elapsed()),
                    Ok(Err(e)) => errs.push(e),
                    Err(_) => errs.push("no answer before --max-seconds".into()),
                }
            }
            (lat, errs)
        }));
    }
    ready.wait().await;
    let cpu0 = (
        cpu_seconds("self"),
        server_pid.and_then(|p| cpu_seconds(&p.to_string())),
        machine_busy_seconds(),
    );
    let start = Instant::now();
    go.wait().await;
    let mut out = Outcome {
        ok: 0,
        errors: 0,
        error_kinds: BTreeMap::new(),
        latencies: Vec::with_capacity(b.count),
        elapsed: Duration::ZERO,
        client_cpu: None,
        server_cpu: None,
        machine_cpu: None,
    };
    for w in workers {
        let (lat, errs) = w.await.context("a worker panicked")?;
        out.ok += lat.len();
        out.latencies.extend(lat);
        out.errors += errs.len();
        for e in errs {
            if out.error_kinds.len() < MAX_ERROR_KINDS || out.error_kinds.contains_key(&e) {
                *out.error_kinds.entry(e).or_default() += 1;
            }
        }
    }
    out.elapsed = start.elapsed();
    out.client_cpu = cpu_seconds("self").zip(cpu0.0).map(|(b, a)| b - a);
    out.server_cpu = server_pid
        .and_then(|p| cpu_seconds(&p.to_string()))
        .zip(cpu0.1)
        .map(|(b, a)| b - a);
    out.machine_cpu = machine_busy_seconds().zip(cpu0.2).map(|(b, a)| b - a);
    Ok(out)
}

/// Nearest-rank percentile of sorted latencies, in milliseconds.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (x * k).round() / k
}

/// The JSON result line; `noun` names the unit (`enrollments`, `requests`).
fn result_line(mode: &str, noun: &str, b: Bounds, http: &str, mut o: Outcome) -> serde_json::Value {
    o.latencies.sort_unstable();
    let secs = o.elapsed.as_secs_f64();
    let rate = if secs > 0.0 { o.ok as f64 / secs } else { 0.0 };
    let per_op_ms = |cpu: Option<f64>| {
        cpu.filter(|_| o.ok > 0)
            .map(|c| round(c * 1000.0 / o.ok as f64, 3))
    };
    let mut v = json!({
        "mode": mode,
        "concurrency": b.concurrency,
        noun: o.ok,
        "errors": o.errors,
        "seconds": round(secs, 3),
        format!("{noun}_per_sec"): round(rate, 1),
        "p50_ms": round(percentile_ms(&o.latencies, 50.0), 2),
        "p99_ms": round(percentile_ms(&o.latencies, 99.0), 2),
        "max_ms": round(percentile_ms(&o.latencies, 100.0), 2),
        "http": http,
        "client_cpu_ms_per_op": per_op_ms(o.client_cpu),
        "server_cpu_ms_per_op": per_op_ms(o.server_cpu),
        "client_cpu_cores": o.client_cpu.map(|c| round(c / secs, 2)),
        "server_cpu_cores": o.server_cpu.map(|c| round(c / secs, 2)),
        "machine_cpu_cores": o.machine_cpu.map(|c| round(c / secs, 2)),
        // Everything else on the machine: the benchmark is not alone.
        "other_cpu_cores": o
            .machine_cpu
            .zip(o.client_cpu)
            .zip(o.server_cpu)
            .map(|((m, c), s)| round(((m - c - s) / secs).max(0.0), 2)),
    });
    if !o.error_kinds.is_empty() {
        v["error_kinds"] = json!(o.error_kinds);
    }
    v
}

/// `bulwark-bench health`.
pub(crate) async fn health(server: Server, b: Bounds, server_pid: Option<u32>) -> Result<()> {
    let http = server.http_version().await?;
    eprintln!(
        "health: {} requests, {} workers, {http}",
        b.count, b.concurrency
    );
    let o = run_workers(&server, b, server_pid, |c: Arc<Client>, _| async move {
        c.health().await.map(drop).map_err(|e| e.to_string())
    })
    .await?;
    println!("{}", result_line("health", "requests", b, &http, o));
    Ok(())
}

/// `bulwark-bench est-enroll`.
pub(crate) async fn est_enroll(
    server: Server,
    token: String,
    b: Bounds,
    server_pid: Option<u32>,
) -> Result<()> {
    let http = server.http_version().await?;
    let admin = Arc::new(server.client(Some(token))?);
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let group =
        GroupId::new(format!("bench-{unix}-{}", std::process::id())).context("group name")?;
    admin
        .create_group(&CreateGroup {
            name: group.clone(),
            description: "bulwark-bench est-enroll".into(),
        })
        .await
        .context("cannot create the benchmark group")?;
    let tokens = create_tokens(&admin, &group, b.count).await?;
    let csrs = generate_csrs(b.count).await?;
    eprintln!(
        "est-enroll: {} enrollments into group {group}, {} workers, {http}",
        b.count, b.concurrency
    );
    let jobs: Arc<Vec<(String, Vec<u8>)>> = Arc::new(tokens.into_iter().zip(csrs).collect());
    let o = run_workers(&server, b, server_pid, move |c: Arc<Client>, i| {
        let jobs = jobs.clone();
        async move {
            let (token, csr) = &jobs[i];
            let p7 = c
                .est_simpleenroll_bearer(token, csr)
                .await
                .map_err(|e| e.to_string())?;
            match bulwark_client::pkcs7_certs(&p7) {
                Ok(certs) if certs.len() == 1 => Ok(()),
                Ok(certs) => Err(format!("answer holds {} certificates, not 1", certs.len())),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await?;
    println!("{}", result_line("est-enroll", "enrollments", b, &http, o));
    Ok(())
}

/// Creates `n` single-use enrollment tokens for `group` (progress on stderr).
async fn create_tokens(admin: &Arc<Client>, group: &GroupId, n: usize) -> Result<Vec<String>> {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let step = (n / 10).max(1);
    let mut tasks = Vec::new();
    for _ in 0..SETUP_CONCURRENCY.min(n) {
        let (admin, next, done, group) = (admin.clone(), next.clone(), done.clone(), group.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let t = admin
                    .create_enroll_token(&CreateEnrollToken {
                        group: group.clone(),
                        device_id: None,
                        ttl_seconds: Some(TOKEN_TTL_SECS),
                    })
                    .await?;
                mine.push(t.token);
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d % step == 0 || d == n {
                    eprintln!("  enrollment tokens: {d}/{n}");
                }
            }
            Ok::<_, bulwark_client::ClientError>(mine)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.context("a setup task panicked")?.context(
            "cannot create an enrollment token (is [limits] per_token_per_sec raised?)",
        )?);
    }
    if all.len() != n {
        bail!("created {} enrollment tokens, wanted {n}", all.len());
    }
    Ok(all)
}

/// `n` DER PKCS#10 requests for fresh P-256 keys, generated on every core.
async fn generate_csrs(n: usize) -> Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let per = n.div_ceil(threads);
    eprintln!("  generating {n} P-256 CSRs");
    let mut tasks = Vec::new();
    for t in 0..threads {
        let count = per.min(n.saturating_sub(t * per));
        tasks.push(tokio::task::spawn_blocking(move || {
            (0..count)
                .map(|_| {
                    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
                    Ok(rcgen::CertificateParams::default()
                        .serialize_request(&key)?
                        .der()
                        .to_vec())
                })
                .collect::<Result<Vec<_>, rcgen::Error>>()
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(
            t.await
                .context("CSR generation panicked")?
                .context("CSR generation")?,
        );
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        let l = ms(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(percentile_ms(&l, 50.0), 5.0);
        assert_eq!(percentile_ms(&l, 99.0), 10.0);
        assert_eq!(percentile_ms(&l, 100.0), 10.0);
        assert_eq!(percentile_ms(&ms(&[7]), 50.0), 7.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }

    #[test]
    fn reads_cpu_times() {
        assert!(cpu_seconds("self").is_some_and(|s| s >= 0.0));
        assert!(machine_busy_seconds().is_some_and(|s| s > 0.0));
    }
}

//! `enroll`: N devices into a group over EST, C at a time.
//!
//! Each worker has its own HTTPS connection for EST; token creation goes
//! through one shared operator client. Per device: a single-use enrollment
//! token for the group (the server picks the device id), a fresh P-256 key
//! and CSR made here, `simpleenroll` with the token, then the key (0600)
//! and certificate are written under the device id the certificate names.
//! Refusals for load (HTTP 429, 503) are retried after a pause.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bulwark_client::types::{CreateEnrollToken, CreateGroup};
use bulwark_client::{Client, ClientError};
use bulwark_types::{DeviceId, GroupId};
use rcgen::PublicKeyData as _;
use serde_json::{json, Value};

use crate::identity;
use crate::stats::{round, Errors};

/// Lifetime of the enrollment tokens, seconds.
const TOKEN_TTL_SECS: u64 = 3600;
/// Attempts of one call refused with 429 or 503.
const MAX_ATTEMPTS: u32 = 30;

/// Where the server is: the variables `bulwark server --dev` writes to `dev.env`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ApiTarget {
    /// Server base URL; must be a loopback address.
    #[arg(long, env = "BULWARK_ADDR")]
    pub(crate) addr: String,
    /// Operator token allowed to create groups and enrollment tokens.
    #[arg(long, env = "BULWARK_TOKEN", hide_env_values = true)]
    pub(crate) token: String,
    /// PEM CA bundle that signed the server's certificate.
    #[arg(long, env = "BULWARK_CACERT")]
    pub(crate) cacert: PathBuf,
}

/// A validated `enroll` command.
pub(crate) struct Plan {
    admin: Arc<Client>,
    addr: String,
    ca: Vec<u8>,
    count: usize,
    group: GroupId,
    out: PathBuf,
    concurrency: usize,
}

impl Plan {
    pub(crate) fn new(
        api: ApiTarget,
        count: usize,
        group: &str,
        out: PathBuf,
        concurrency: usize,
    ) -> Result<Plan> {
        let group = GroupId::new(group).with_context(|| format!("group name {group:?}"))?;
        let ca = std::fs::read(&api.cacert)
            .with_context(|| format!("cannot read {}", api.cacert.display()))?;
        let admin = Client::new(&api.addr, Some(api.token), &ca)
            .context("BULWARK_ADDR / BULWARK_CACERT")?;
        let host = admin.base_url().host_str().unwrap_or("");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => host.eq_ignore_ascii_case("localhost"),
        };
        if !loopback {
            bail!(
                "{}: bulwark-sim only talks to servers on loopback addresses",
                api.addr
            );
        }
        Ok(Plan {
            admin: Arc::new(admin),
            addr: api.addr,
            ca,
            count,
            group,
            out,
            concurrency: concurrency.min(count),
        })
    }
}

pub(crate) async fn run(plan: Plan) -> Result<Value> {
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("cannot create {}", plan.out.display()))?;
    let created = ensure_group(&plan.admin, &plan.group).await?;
    eprintln!(
        "enroll: {} devices into group {} ({}), {} at a time",
        plan.count,
        plan.group,
        if created { "created" } else { "exists" },
        plan.concurrency
    );
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let enrolled: Arc<Mutex<Vec<(usize, DeviceId)>>> =
        Arc::new(Mutex::new(Vec::with_capacity(plan.count)));
    let start = Instant::now();
    let mut workers = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency {
        let (plan, next, done, enrolled) =
            (plan.clone(), next.clone(), done.clone(), enrolled.clone());
        workers.push(tokio::spawn(async move {
            let mut errors = Errors::default();
            let est = match Client::new(&plan.addr, None, &plan.ca) {
                Ok(c) => c,
                Err(e) => {
                    errors.add(e);
                    return errors;
                }
            };
            let step = (plan.count / 10).max(1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.count {
                    break;
                }
                match enroll_one(&plan.admin, &est, &plan.group, &plan.out).await {
                    Ok(id) => {
                        if let Ok(mut v) = enrolled.lock() {
                            v.push((i, id));
                        }
                    }
                    Err(e) => errors.add(format!("{e:#}")),
                }
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d % step == 0 || d == plan.count {
                    eprintln!(
                        "  enrolled {d}/{} ({:.1} s)",
                        plan.count,
                        start.elapsed().as_secs_f64()
                    );
                }
            }
            errors
        }));
    }
    let mut errors = Errors::default();
    for w in workers {
        errors.merge(
            w.await
                .map_err(|_| anyhow!("an enrollment worker panicked"))?,
        );
    }
    let secs = start.elapsed().as_secs_f64();
    let mut ids = std::mem::take(&mut *enrolled.lock().map_err(|_| anyhow!("poisoned"))?);
    ids.sort_by_key(|(i, _)| *i);
    let ids: Vec<DeviceId> = ids.into_iter().map(|(_, id)| id).collect();
    identity::write_list(&plan.out, &ids)?;
    let mut v = json!({
        "command": "enroll",
        "group": plan.group.as_str(),
        "requested": plan.count,
        "enrolled": ids.len(),
        "concurrency": plan.concurrency,
        "seconds": round(secs, 3),
        "enrollments_per_sec": round(ids.len() as f64 / secs, 1),
        "out": plan.out.display().to_string(),
    });
    errors.put(&mut v);
    Ok(v)
}

/// Creates the group; `false` if it already existed.
async fn ensure_group(admin: &Client, group: &GroupId) -> Result<bool> {
    let req = CreateGroup {
        name: group.clone(),
        description: "bulwark-sim fleet".into(),
    };
    match retry(|| admin.create_group(&req)).await {
        Ok(_) => Ok(true),
        Err(e) if e.status() == Some(409) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create group {group}")),
    }
}

async fn enroll_one(admin: &Client, est: &Client, group: &GroupId, out: &Path) -> Result<DeviceId> {
    let req = CreateEnrollToken {
        group: group.clone(),
        device_id: None,
        ttl_seconds: Some(TOKEN_TTL_SECS),
    };
    let token = retry(|| admin.create_enroll_token(&req))
        .await
        .context("creating an enrollment token")?
        .token;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("P-256 key")?;
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .context("CSR")?
        .der()
        .to_vec();
    let p7 = retry(|| est.est_simpleenroll_bearer(&token, &csr))
        .await
        .context("EST simpleenroll")?;
    let certs = bulwark_client::pkcs7_certs(&p7).context("EST answer")?;
    let (id, leaf) = leaf_for(&certs, key.der_bytes())?;
    identity::write_device(out, &id, &key.serialize_pem(), leaf)?;
    Ok(id)
}

/// The certificate for our public key, and the device id in its subject CN.
fn leaf_for<'a>(certs: &'a [Vec<u8>], public_key: &[u8]) -> Result<(DeviceId, &'a [u8])> {
    for der in certs {
        let (_, cert) = x509_parser::parse_x509_certificate(der).context("issued certificate")?;
        if cert.public_key().subject_public_key.data[..] != *public_key {
            continue;
        }
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| anyhow!("the issued certificate has no subject CN"))?;
        let id = DeviceId::new(cn).with_context(|| format!("device id {cn:?}"))?;
        return Ok((id, der));
    }
    bail!(
        "the EST answer holds no certificate for the key sent ({} certificates)",
        certs.len()
    )
}

/// Calls `f` until it succeeds or fails with something other than 429/503.
async fn retry<T, F, Fut>(mut f: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Err(e) if matches!(e.status(), Some(429 | 503)) && attempt + 1 < MAX_ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10)))).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_leaf_by_key() {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ca = rcgen::CertificateParams::new(vec![])
            .unwrap()
            .self_signed(&ca_key)
            .unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dev-0a1b");
        let leaf = params.self_signed(&key).unwrap();
        let certs = vec![ca.der().to_vec(), leaf.der().to_vec()];
        let (id, der) = leaf_for(&certs, key.der_bytes()).unwrap();
        assert_eq!(id.as_str(), "dev-0a1b");
        assert_eq!(der, leaf.der().as_ref());
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert!(leaf_for(&certs, other.der_bytes()).is_err());
    }
}

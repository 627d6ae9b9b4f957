//! In-process issuance throughput on every core: how many client
//! certificates per second the CA signs with no network, HTTP or database in
//! the way, next to a same-run baseline of raw aws-lc-rs ECDSA P-256 signing
//! and verification on the same threads.
//!
//! ```text
//! cargo run --release -p bulwark-ca --example issue_throughput -- [--secs 2] [--rounds 5] [--threads N]
//! ```
//!
//! A round runs each phase on `--threads` threads (default: every core) for
//! `--secs` seconds (at most 60) and prints one JSON line per phase. Rounds
//! interleave the phases so that load from other processes on a shared
//! machine hits all of them alike; the closing markdown table holds the
//! median of the `--rounds` rounds (at most 50). The CSRs (256 distinct
//! P-256 keys) are generated before timing starts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING,
};
use bulwark_ca::{random_serial, verify_csr, Ca, CaOptions, KdfParams, Passphrase, Subject};
use bulwark_types::DeviceId;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

const CSRS: usize = 256;
const MAX_SECS: u64 = 60;
const MAX_ROUNDS: u64 = 50;

struct Args {
    secs: u64,
    rounds: usize,
    threads: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        secs: 2,
        rounds: 5,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
        match flag.as_str() {
            "--secs" => a.secs = n.clamp(1, MAX_SECS),
            "--rounds" => a.rounds = usize::try_from(n.clamp(1, MAX_ROUNDS)).unwrap_or(1),
            "--threads" => a.threads = usize::try_from(n.clamp(1, 256)).unwrap_or(1),
            other => {
                return Err(format!(
                    "unknown flag {other}; use --secs, --rounds, --threads"
                ))
            }
        }
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `op` on `threads` threads for `secs` seconds; returns operations per second.
fn measure<F>(name: &str, a: &Args, op: &F) -> f64
where
    F: Fn(usize, u64) + Sync,
{
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..a.threads)
            .map(|t| {
                let stop = &stop;
                s.spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        op(t, n);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(a.secs));
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().expect("worker panicked"))
            .sum()
    });
    let secs = start.elapsed().as_secs_f64();
    let per_sec = total as f64 / secs;
    println!(
        "{{\"phase\":\"{name}\",\"threads\":{},\"ops\":{total},\"seconds\":{secs:.3},\"ops_per_sec\":{per_sec:.0}}}",
        a.threads
    );
    per_sec
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("issue_throughput: {e}");
            std::process::exit(2);
        }
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let pass = Passphrase::new("bench passphrase".into()).expect("passphrase");
    let ca = Ca::init(
        tmp.path(),
        &pass,
        KdfParams::fast_for_tests(),
        CaOptions::default(),
    )
    .expect("ca init");
    let lifetime = ca.device_lifetime();
    eprintln!("generating {CSRS} P-256 CSRs (not timed)");
    let csrs: Vec<Vec<u8>> = (0..CSRS)
        .map(|_| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
            rcgen::CertificateParams::default()
                .serialize_request(&key)
                .expect("csr")
                .der()
                .to_vec()
        })
        .collect();
    let verified: Vec<_> = csrs.iter().map(|d| verify_csr(d).expect("csr")).collect();
    let parts: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = csrs
        .iter()
        .map(|d| {
            let (_, req) = X509CertificationRequest::from_der(d).expect("csr parses");
            let info = &req.certification_request_info;
            (
                info.subject_pki.subject_public_key.data.to_vec(),
                info.raw.to_vec(),
                req.signature_value.data.to_vec(),
            )
        })
        .collect();
    let subjects: Vec<Subject> = (0..a.threads)
        .map(|t| Subject::Device(DeviceId::new(format!("bench-{t}")).expect("device id")))
        .collect();
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
    let sign_key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("key");
    let message = ca
        .issue_client(&verified[0], &subjects[0], &random_serial(), lifetime)
        .expect("issue")
        .der;
    eprintln!(
        "{} thread(s), {} round(s) of {} s per phase; baselines are raw aws-lc-rs calls",
        a.threads, a.rounds, a.secs
    );

    type Phase<'a> = Box<dyn Fn(usize, u64) + Sync + 'a>;
    let phases: [(&str, Phase); 4] = [
        (
            "baseline_ecdsa_p256_sign",
            Box::new(|_, _| {
                std::hint::black_box(sign_key.sign(&rng, &message).expect("sign"));
            }),
        ),
        (
            "baseline_ecdsa_p256_verify",
            Box::new(|_, n| {
                let (point, signed, sig) = &parts[n as usize % CSRS];
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
                    .verify(signed, sig)
                    .expect("verify");
            }),
        ),
        (
            "issue_client",
            Box::new(|t, n| {
                let csr = &verified[n as usize % CSRS];
                std::hint::black_box(
                    ca.issue_client(csr, &subjects[t], &random_serial(), lifetime)
                        .expect("issue"),
                );
            }),
        ),
        (
            "csr_verify_and_issue",
            Box::new(|t, n| {
                let csr = verify_csr(&csrs[n as usize % CSRS]).expect("verify");
                std::hint::black_box(
                    ca.issue_client(&csr, &subjects[t], &random_serial(), lifetime)
                        .expect("issue"),
                );
            }),
        ),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); phases.len()];
    for round in 0..a.rounds {
        // Rotate the order so no phase always runs first or last.
        for k in 0..phases.len() {
            let i = (k + round) % phases.len();
            let (name, op) = &phases[i];
            rates[i].push(measure(name, &a, op));
        }
    }
    let [sign, verify, issue, both] = [0, 1, 2, 3].map(|i| median(rates[i].clone()));
    // What verify + sign would cost if nothing but the crypto ran.
    let crypto_only = 1.0 / (1.0 / sign + 1.0 / verify);

    println!();
    println!(
        "| phase ({} threads, median of {} rounds of {} s) | ops/s |",
        a.threads, a.rounds, a.secs
    );
    println!("|---|---:|");
    println!("| baseline: raw ECDSA P-256 sign | {sign:.0} |");
    println!("| baseline: raw ECDSA P-256 verify | {verify:.0} |");
    println!("| baseline: raw sign + verify (computed) | {crypto_only:.0} |");
    println!(
        "| issue_client (CSR already verified) | {issue:.0} ({:.0}% of raw sign) |",
        100.0 * issue / sign
    );
    println!(
        "| csr_verify_and_issue | {both:.0} ({:.0}% of raw sign + verify) |",
        100.0 * both / crypto_only
    );
}

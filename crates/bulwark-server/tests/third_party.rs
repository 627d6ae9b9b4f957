//! Interoperability with third-party tools only: `openssl req` makes the key
//! and CSR, `curl` speaks EST, `openssl pkcs7` reads the answer, and
//! `openssl verify -crl_check` sees a revoked certificate refused.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run, Server};

fn curl(server: &Server) -> Command {
    let mut c = Command::new("curl");
    c.args(["--silent", "--show-error", "--cacert"])
        .arg(&server.cacert);
    c
}

/// Runs `curl`, returning (HTTP status, body written to `out`).
fn curl_status(cmd: &mut Command, out: &Path) -> u16 {
    let o = cmd
        .arg("-o")
        .arg(out)
        .args(["-w", "%{http_code}"])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("status")
}

/// POSTs the base64 CSR `csr_b64` to the EST `endpoint` with extra curl
/// arguments (credentials), writing the answer to `out`; returns the status.
fn est_post(
    server: &Server,
    auth: &[std::ffi::OsString],
    csr_b64: &Path,
    endpoint: &str,
    out: &Path,
) -> u16 {
    curl_status(
        curl(server)
            .args(auth)
            .args(["-H", "Content-Type: application/pkcs10"])
            .arg("--data-binary")
            .arg(format!("@{}", csr_b64.display()))
            .arg(format!("{}/.well-known/est/{endpoint}", server.addr)),
        out,
    )
}

fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
    args.iter().map(Into::into).collect()
}

fn openssl_csr(dir: &Path, name: &str) {
    run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", "/CN=whatever-i-like", "-keyout"])
        .arg(dir.join(format!("{name}.key")))
        .args(["-outform", "DER", "-out"])
        .arg(dir.join(format!("{name}.der"))));
    run(Command::new("sh").arg("-c").arg(format!(
        "base64 {d}/{name}.der > {d}/{name}.b64",
        d = dir.display()
    )));
}

/// Decodes a base64 PKCS#7 EST answer into PEM certificates with openssl.
fn print_certs(dir: &Path, b64: &str, pem: &str) -> String {
    run(Command::new("sh").arg("-c").arg(format!(
        "base64 -d {d}/{b64} > {d}/{b64}.p7 && openssl pkcs7 -inform DER -in {d}/{b64}.p7 -print_certs -out {d}/{pem}",
        d = dir.display()
    )));
    std::fs::read_to_string(dir.join(pem)).expect("pem")
}

fn verify(dir: &Path, leaf: &str) -> std::process::Output {
    Command::new("openssl")
        .args(["verify", "-crl_check", "-CAfile"])
        .arg(dir.join("chain.pem"))
        .arg("-CRLfile")
        .arg(dir.join("crl.pem"))
        .arg(dir.join(leaf))
        .output()
        .expect("openssl verify")
}

fn fetch_ca(server: &Server, dir: &Path) {
    for (path, file) in [
        ("/v1/ca/chain.pem", "chain.pem"),
        ("/v1/ca/crl.pem", "crl.pem"),
    ] {
        let status = curl_status(
            curl(server).arg(format!("{}{path}", server.addr)),
            &dir.join(file),
        );
        assert_eq!(status, 200, "{path}");
    }
}

#[test]
fn enroll_renew_revoke_with_openssl_and_curl() {
    let server = Server::start("");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(server.cli(&["group", "create", "lobby"]).status.success());
    let out = server.cli(&[
        "enroll-token",
        "create",
        "--group",
        "lobby",
        "--device-id",
        "door-17",
    ]);
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();

    // cacerts: two certificates (issuing CA and root).
    let status = curl_status(
        curl(&server).arg(format!("{}/.well-known/est/cacerts", server.addr)),
        &d.join("cacerts.b64"),
    );
    assert_eq!(status, 200);
    let cacerts = print_certs(d, "cacerts.b64", "cacerts.pem");
    assert_eq!(cacerts.matches("BEGIN CERTIFICATE").count(), 2);

    // simpleenroll with the token as a Bearer credential.
    openssl_csr(d, "dev");
    let bearer = os(&["-H", &format!("Authorization: Bearer {token}")]);
    let status = est_post(
        &server,
        &bearer,
        &d.join("dev.b64"),
        "simpleenroll",
        &d.join("dev.resp.b64"),
    );
    assert_eq!(status, 200);
    let leaf = print_certs(d, "dev.resp.b64", "dev.pem");
    assert_eq!(leaf.matches("BEGIN CERTIFICATE").count(), 1);
    let subject = run(Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(d.join("dev.pem")));
    assert!(subject.contains("CN = door-17"), "{subject}");
    assert!(!subject.contains("whatever-i-like"));

    fetch_ca(&server, d);
    let ok = verify(d, "dev.pem");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // simplereenroll over mutual TLS with a new key.
    openssl_csr(d, "renew");
    let mtls: Vec<std::ffi::OsString> = vec![
        "--cert".into(),
        d.join("dev.pem").into(),
        "--key".into(),
        d.join("dev.key").into(),
    ];
    let status = est_post(
        &server,
        &mtls,
        &d.join("renew.b64"),
        "simplereenroll",
        &d.join("renew.resp.b64"),
    );
    assert_eq!(status, 200);
    print_certs(d, "renew.resp.b64", "renew.pem");
    let subject = run(Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(d.join("renew.pem")));
    assert!(subject.contains("CN = door-17"), "{subject}");

    // Revoke the first certificate by the serial openssl prints.
    let serial = run(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(d.join("dev.pem")));
    let out = server.cli(&[
        "cert",
        "revoke",
        serial.trim(),
        "--reason",
        "key-compromise",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    fetch_ca(&server, d);
    let refused = verify(d, "dev.pem");
    assert!(!refused.status.success());
    let text = String::from_utf8_lossy(&refused.stdout).to_string()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(text.contains("certificate revoked"), "{text}");
    let ok = verify(d, "renew.pem");
    assert!(ok.status.success(), "the renewed certificate is still good");

    // The revoked certificate can no longer renew.
    let status = est_post(
        &server,
        &mtls,
        &d.join("renew.b64"),
        "simplereenroll",
        &d.join("refused.json"),
    );
    assert_eq!(status, 401);
    let body = std::fs::read_to_string(d.join("refused.json")).unwrap();
    assert!(body.contains("is revoked"), "{body}");

    // HTTP Basic with the token as password (curl -u).
    let out = server.cli(&["enroll-token", "create", "--group", "lobby"]);
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let basic = os(&["-u", &format!("device:{token}")]);
    let status = est_post(
        &server,
        &basic,
        &d.join("renew.b64"),
        "simpleenroll",
        &d.join("basic.b64"),
    );
    assert_eq!(status, 200);
    print_certs(d, "basic.b64", "basic.pem");
}

//! Test harness: runs the real `bulwark` binary on 127.0.0.1:0 in a
//! temporary data directory, and gives typed clients, CSRs and CLI runs.
#![allow(dead_code)]

pub mod agent;
pub mod mqtt;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bulwark_client::Client;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bulwark")
}

/// A running server process.
pub struct Server {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: String,
    pub addr: String,
    pub token: String,
    pub cacert: PathBuf,
    /// `host:port` of the mTLS MQTT listener.
    pub mqtt_addr: String,
    /// `host:port` of the plaintext dev MQTT listener.
    pub mqtt_dev_addr: String,
}

impl Server {
    /// Starts a dev-mode server with extra TOML configuration.
    pub fn start(config: &str) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server {
            child: None,
            dir,
            config: config.to_string(),
            addr: String::new(),
            token: String::new(),
            cacert: PathBuf::new(),
            mqtt_addr: String::new(),
            mqtt_dev_addr: String::new(),
        };
        s.spawn();
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let data = self.data_dir();
        let env_file = data.join("dev.env");
        let _ = std::fs::remove_file(&env_file);
        let cfg = self.dir.path().join("bulwark.toml");
        std::fs::write(&cfg, &self.config).expect("write config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let child = Command::new(bin())
            .args(["server", "--dev", "--api-addr", "127.0.0.1:0"])
            .args([
                "--mqtt-addr",
                "127.0.0.1:0",
                "--dev-mqtt-plain-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .env_remove("BULWARK_PASSPHRASE")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn bulwark server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&env_file) {
                if text.contains("BULWARK_CACERT") {
                    for line in text.lines() {
                        let Some(rest) = line.strip_prefix("export ") else {
                            continue;
                        };
                        let (k, v) = rest.split_once('=').expect("k=v");
                        let v = v.trim_matches('\'').to_string();
                        match k {
                            "BULWARK_ADDR" => self.addr = v,
                            "BULWARK_TOKEN" => self.token = v,
                            "BULWARK_CACERT" => self.cacert = PathBuf::from(v),
                            "BULWARK_MQTT_ADDR" => self.mqtt_addr = v,
                            "BULWARK_MQTT_DEV_ADDR" => self.mqtt_dev_addr = v,
                            _ => {}
                        }
                    }
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("server exited early ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill");
        c.wait().expect("wait")
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn client(&self) -> Client {
        self.client_with(Some(self.token.clone()))
    }

    pub fn client_with(&self, token: Option<String>) -> Client {
        let ca = std::fs::read(&self.cacert).expect("ca bundle");
        Client::new(&self.addr, token, &ca).expect("client")
    }

    /// A client presenting a TLS client certificate.
    pub fn client_with_identity(&self, cert_pem: &str, key_pem: &str) -> Client {
        self.client_with(None)
            .with_identity(cert_pem.as_bytes(), key_pem.as_bytes())
            .expect("identity")
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_token(&self.token, args)
    }

    pub fn cli_with_token(&self, token: &str, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .env("BULWARK_ADDR", &self.addr)
            .env("BULWARK_TOKEN", token)
            .env("BULWARK_CACERT", &self.cacert)
            .output()
            .expect("run cli")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("bulwark.db")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A device key and its DER CSR (the CSR asks for `cn`).
pub fn csr(cn: &str) -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let der = params.serialize_request(&key).expect("csr").der().to_vec();
    (key, der)
}

/// Extracts the single certificate of a PKCS#7 answer, as PEM.
pub fn leaf_pem(p7: &[u8]) -> (Vec<u8>, String) {
    let certs = bulwark_client::pkcs7_certs(p7).expect("pkcs7");
    assert_eq!(
        certs.len(),
        1,
        "simpleenroll answers exactly one certificate"
    );
    let der = certs[0].clone();
    let pem = pem_encode("CERTIFICATE", &der);
    (der, pem)
}

pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("ascii"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// Runs a command, panicking with its stderr if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn write(dir: &Path, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write");
    p
}

/// Problem detail of an API error, or panic.
pub fn problem(e: bulwark_client::ClientError) -> (u16, String) {
    match e {
        bulwark_client::ClientError::Api { status, problem } => {
            (status, problem.detail.unwrap_or_default())
        }
        other => panic!("expected an API error, got {other}"),
    }
}

/// A plain HTTPS client trusting the server's CA, for requests the typed
/// client refuses to build (malformed bodies, missing credentials).
pub fn raw(server: &Server) -> reqwest::Client {
    let pem = std::fs::read(&server.cacert).expect("ca bundle");
    let ca = reqwest::Certificate::from_pem(&pem).expect("ca pem");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("reqwest client")
}

/// Status and problem detail of a raw response.
pub async fn raw_problem(resp: reqwest::Response) -> (u16, String, reqwest::header::HeaderMap) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_string(),
        headers,
    )
}

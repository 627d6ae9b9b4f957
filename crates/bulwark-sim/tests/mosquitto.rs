//! The simulator against a real broker: a Mosquitto started here on a free
//! loopback port, TLS with a required client certificate, and a throw-away
//! PKI made with openssl. Runs `connect-rate` and `fan-in` for a few
//! seconds each and checks the JSON results.
//!
//! Skipped, with the reason printed, when no `mosquitto` binary is found.
//! `openssl` is required (as for the rest of the workspace's tests).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const DEVICES: usize = 4;

fn find_mosquitto() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"].map(PathBuf::from))
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed to run this test");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for localhost/127.0.0.1 and DEVICES client
/// certificates (CN = device id) in the layout `bulwark-sim enroll` writes.
fn make_pki(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509", "-days", "1", "-subj", "/CN=sim-test-ca"];
    args.extend(ec);
    args.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let issue = |name: &str, key: &str, crt: &str, ext: &str| {
        let mut args = vec!["req", "-subj"];
        let subj = format!("/CN={name}");
        args.push(&subj);
        args.extend(ec);
        args.extend(["-keyout", key, "-out", "req.csr"]);
        openssl(dir, &args);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "req.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                ext,
                "-out",
                crt,
            ],
        );
    };
    issue("localhost", "server.key", "server.pem", "server.ext");
    std::fs::create_dir(dir.join("certs")).unwrap();
    let mut list = String::new();
    for i in 0..DEVICES {
        let id = format!("sim-dev-{i}");
        issue(
            &id,
            &format!("certs/{id}.key"),
            &format!("certs/{id}.crt"),
            "client.ext",
        );
        list.push_str(&id);
        list.push('\n');
    }
    std::fs::write(dir.join("certs/devices.txt"), list).unwrap();
}

/// Kills the broker when the test ends, however it ends.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_mosquitto(bin: &Path, dir: &Path) -> (Broker, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let d = dir.display();
    let conf = format!(
        "persistence false\nallow_anonymous false\n{}log_dest stderr\n\
         max_inflight_messages 20\nmax_queued_messages 1000\n\
         listener {port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\n\
         keyfile {d}/server.key\nrequire_certificate true\nuse_identity_as_username true\n",
        // As root, Mosquitto would switch to the `mosquitto` user, which
        // cannot read the temporary directory.
        if root { "user root\n" } else { "" },
    );
    std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
    let log = std::fs::File::create(dir.join("mosquitto.log")).unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("cannot start mosquitto");
    let broker = Broker(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "mosquitto did not listen on {addr}: {}",
            std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (broker, port)
}

fn sim(dir: &Path, port: u16, args: &[&str]) -> Value {
    let broker = format!("127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_bulwark-sim"))
        .args(["load", "--broker", &broker, "--server-name", "localhost"])
        .arg("--cafile")
        .arg(dir.join("ca.pem"))
        .arg("--certs")
        .arg(dir.join("certs"))
        .args(["--max-seconds", "60"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bulwark-sim {args:?} failed:\n{stderr}\n{stdout}"
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

#[test]
fn connect_rate_and_fan_in_against_mosquitto() {
    let Some(bin) = find_mosquitto() else {
        eprintln!("skipping: no `mosquitto` binary on PATH or in /usr/sbin");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path());
    let (_broker, port) = start_mosquitto(&bin, dir.path());

    let v = sim(
        dir.path(),
        port,
        &[
            "--scenario",
            "connect-rate",
            "--clients",
            "4",
            "--concurrency",
            "2",
            "--duration",
            "2",
            "--source-ips",
            "127.0.0.2-127.0.0.3",
        ],
    );
    assert_eq!(v["scenario"], "connect-rate");
    assert!(v["setups"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(
        v["p99_ms"].as_f64().unwrap() >= v["p50_ms"].as_f64().unwrap(),
        "{v}"
    );

    // Rate-limited, so that even a busy machine delivers everything.
    let v = sim(
        dir.path(),
        port,
        &[
            "--scenario",
            "fan-in",
            "--clients",
            "3",
            "--duration",
            "2",
            "--qos",
            "1",
            "--rate",
            "600",
        ],
    );
    assert_eq!(v["publishers"], 3, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["losses"], 0, "{v}");
    let acked = v["acked"].as_u64().unwrap();
    assert!(acked > 600, "{v}");
    assert_eq!(v["received"].as_u64().unwrap(), acked, "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");

    let v = sim(
        dir.path(),
        port,
        &[
            "--scenario",
            "fan-in",
            "--clients",
            "2",
            "--duration",
            "1",
            "--qos",
            "0",
            "--mqtt",
            "3.1.1",
            "--rate",
            "200",
        ],
    );
    assert_eq!(v["mqtt"], "3.1.1");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["received"].as_u64().unwrap() > 0, "{v}");
}

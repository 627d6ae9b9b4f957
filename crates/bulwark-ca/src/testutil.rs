//! Helpers shared by this crate's unit tests: a throwaway CA, CSRs made with
//! rcgen and with the `openssl` command-line tool, and openssl runners.

use std::path::Path;
use std::process::Command;

use rcgen::{CertificateParams, DnType, KeyPair, SignatureAlgorithm};

use crate::{Ca, CaOptions, KdfParams, Passphrase};

/// A CA in a temporary data directory, with fast KDF parameters.
pub(crate) struct TestCa {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) ca: Ca,
}

impl TestCa {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ca = Ca::init(
            tmp.path(),
            &pass(),
            KdfParams::fast_for_tests(),
            CaOptions::default(),
        )
        .expect("ca init");
        Self { tmp, ca }
    }

    /// Writes `contents` to `<tmp>/<name>` and returns the path as a string.
    pub(crate) fn file(&self, name: &str, contents: &[u8]) -> String {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, contents).expect("write test file");
        path.to_str().expect("utf-8 path").to_owned()
    }
}

pub(crate) fn pass() -> Passphrase {
    Passphrase::new("correct horse battery staple".into()).expect("passphrase")
}

/// Runs openssl; returns (success, stdout + stderr).
pub(crate) fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command-line tool must be installed to run these tests");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs openssl, panicking with its output if it fails.
pub(crate) fn openssl_ok(args: &[&str]) -> String {
    let (ok, text) = openssl(args);
    assert!(ok, "openssl {args:?} failed:\n{text}");
    text
}

/// A DER CSR for CN=x with a fresh rcgen key of algorithm `alg`.
pub(crate) fn rcgen_csr(alg: &'static SignatureAlgorithm) -> Vec<u8> {
    let key = KeyPair::generate_for(alg).expect("keygen");
    let mut params = CertificateParams::default();
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(DnType::CommonName, "x");
    params.serialize_request(&key).expect("csr").der().to_vec()
}

/// A DER CSR for CN=x made by `openssl req` with `key_args` (e.g. `["-newkey", "rsa:2048"]`).
pub(crate) fn openssl_csr(dir: &Path, key_args: &[&str]) -> Vec<u8> {
    let out = dir.join("req.der");
    let key = dir.join("req.key");
    let mut args = vec!["req", "-new", "-nodes", "-subj", "/CN=x", "-outform", "DER"];
    args.extend_from_slice(key_args);
    args.extend_from_slice(&[
        "-keyout",
        key.to_str().expect("utf-8"),
        "-out",
        out.to_str().expect("utf-8"),
    ]);
    openssl_ok(&args);
    std::fs::read(out).expect("read csr")
}

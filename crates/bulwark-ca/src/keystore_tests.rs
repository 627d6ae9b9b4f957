//! Tests for the key store: round trips, modes, wrong passphrases, tampering.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.into()).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn round_trip_and_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let ks = Keystore::create(&dir, &pass("hunter2"), KdfParams::fast_for_tests()).unwrap();
    ks.store("issuing", b"top secret key bytes").unwrap();
    drop(ks);

    let ks = Keystore::open(&dir, &pass("hunter2")).unwrap();
    assert_eq!(
        ks.load("issuing").unwrap().as_slice(),
        b"top secret key bytes"
    );
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("kek.json")), 0o600);
    assert_eq!(mode(&dir.join("issuing.key.enc")), 0o600);
    let on_disk = std::fs::read(dir.join("issuing.key.enc")).unwrap();
    assert!(!on_disk.windows(10).any(|w| w == b"top secret"));
    // No stray temp files after atomic writes.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn wrong_passphrase_is_reported_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    Keystore::create(&dir, &pass("right"), KdfParams::fast_for_tests()).unwrap();
    let err = Keystore::open(&dir, &pass("wrong")).unwrap_err();
    assert!(matches!(err, CaError::WrongPassphrase { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("wrong passphrase for key store at {}", dir.display())
    );
}

#[test]
fn tampering_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let ks = Keystore::create(&dir, &pass("pw"), KdfParams::fast_for_tests()).unwrap();
    ks.store("root", b"secret-root").unwrap();
    ks.store("audit", b"secret-audit").unwrap();
    let path = dir.join("root.key.enc");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = ks.load("root").unwrap_err();
    assert!(
        matches!(&err, CaError::KeyTampered { name } if name == "root"),
        "{err:?}"
    );

    // A key file moved to another name fails too: the name is authenticated.
    std::fs::copy(dir.join("audit.key.enc"), &path).unwrap();
    let err = ks.load("root").unwrap_err();
    assert!(matches!(err, CaError::KeyTampered { .. }), "{err:?}");

    let err = ks.load("missing").unwrap_err();
    assert!(matches!(err, CaError::KeyNotFound { .. }), "{err:?}");
    let err = ks.store("../evil", b"x").unwrap_err();
    assert!(matches!(err, CaError::InvalidKeyName { .. }), "{err:?}");
}

#[test]
fn create_refuses_existing_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    Keystore::create(&dir, &pass("pw"), KdfParams::fast_for_tests()).unwrap();
    let err = Keystore::create(&dir, &pass("pw"), KdfParams::fast_for_tests()).unwrap_err();
    assert!(matches!(err, CaError::AlreadyInitialized { .. }), "{err:?}");
    let err = Keystore::open(&tmp.path().join("nope"), &pass("pw")).unwrap_err();
    assert!(matches!(err, CaError::NotInitialized { .. }), "{err:?}");
}

#[test]
fn passphrase_trims_newlines_and_hides_itself() {
    let p = Passphrase::from_bytes(b"s3cr3t-value\r\n".to_vec()).unwrap();
    assert_eq!(p.expose(), b"s3cr3t-value");
    assert_eq!(format!("{p:?}"), "Passphrase(***)");
    assert!(matches!(
        Passphrase::new("\n".into()),
        Err(CaError::EmptyPassphrase)
    ));
    let tmp = tempfile::tempdir().unwrap();
    let ks = Keystore::create(&tmp.path().join("k"), &p, KdfParams::fast_for_tests()).unwrap();
    assert!(!format!("{ks:?}").contains("s3cr3t"));
}

#[test]
fn kdf_params_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let huge = KdfParams {
        m_cost_kib: u32::MAX,
        ..KdfParams::default()
    };
    let err = Keystore::create(&tmp.path().join("k"), &pass("pw"), huge).unwrap_err();
    assert!(matches!(err, CaError::KdfParams { .. }), "{err:?}");
    assert_eq!(
        KdfParams::default(),
        KdfParams {
            m_cost_kib: 19_456,
            t_cost: 2,
            p_cost: 1
        }
    );
}

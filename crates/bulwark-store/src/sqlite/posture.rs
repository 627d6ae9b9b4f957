//! Reads for the scheduled posture audits: devices with their certificates
//! a page at a time, and the audit log verified in one streaming pass on a
//! reader connection (memory stays bounded however long the log is).

use bulwark_audit::{verify, VerifyError, VerifyReport};
use rusqlite::{params, Connection};

use super::{audit_entry, manufacturer, read_checkpoints, rows};
use crate::{DevicePosture, Result};

/// Devices with ids greater than `after`, by id, at most `limit`, each with
/// its Bulwark-issued device certificates (newest first; the DER only for
/// unrevoked ones, empty otherwise) and its manufacturer certificates.
pub(super) fn devices(
    conn: &Connection,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<DevicePosture>> {
    let sql = format!(
        "SELECT {} FROM devices WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2",
        rows::DEVICE_COLS
    );
    let devices = conn
        .prepare_cached(&sql)?
        .query_map(params![after, limit], rows::device)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut certs = conn.prepare_cached(
        "SELECT serial, kind, subject, fingerprint, not_before, not_after, revoked_at, \
         revocation_reason, CASE WHEN revoked_at IS NULL THEN der ELSE X'' END \
         FROM certificates WHERE kind = 'device' AND subject = ?1 \
         ORDER BY issued_at DESC, serial",
    )?;
    let mut out = Vec::with_capacity(devices.len());
    for device in devices {
        let certificates = certs
            .query_map([device.id.as_str()], rows::cert_record)?
            .collect::<rusqlite::Result<_>>()?;
        let manufacturer_certificates = manufacturer::device_certs(conn, device.id.as_str())?;
        out.push(DevicePosture {
            device,
            certificates,
            manufacturer_certificates,
        });
    }
    Ok(out)
}

/// Verifies the audit log against its signed checkpoints, row by row. The
/// outer `Result` is about reading the database; the inner one is the verdict.
pub(crate) fn verify_audit(
    conn: &Connection,
    public_key: &[u8; 32],
) -> Result<std::result::Result<VerifyReport, VerifyError>> {
    let checkpoints = read_checkpoints(conn)?;
    let mut st = conn.prepare_cached(
        "SELECT seq, ts, actor, event, prev_hash, hash FROM audit_log ORDER BY seq",
    )?;
    let mut rows = st.query_map([], audit_entry)?;
    let mut read_error = None;
    let entries = std::iter::from_fn(|| match rows.next()? {
        Ok(e) => Some(e),
        Err(e) => {
            read_error = Some(e);
            None
        }
    });
    let verdict = verify(entries, &checkpoints, public_key);
    if let Some(e) = read_error {
        return Err(e.into());
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use bulwark_audit::{Actor, AuditEvent};
    use bulwark_types::{DeviceId, GroupId};

    use crate::sqlite::{CheckpointPolicy, CheckpointSigner, SqliteStore};
    use crate::{NewDevice, NewGroup, Store};

    struct Signer(Ed25519KeyPair);
    impl CheckpointSigner for Signer {
        fn sign(&self, m: &[u8]) -> Vec<u8> {
            self.0.sign(m).as_ref().to_vec()
        }
    }

    fn open(dir: &std::path::Path) -> (SqliteStore, [u8; 32]) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let pk: [u8; 32] = key.public_key().as_ref().try_into().unwrap();
        let store = SqliteStore::open(
            &dir.join("db.sqlite"),
            Box::new(Signer(key)),
            CheckpointPolicy::default(),
        )
        .unwrap();
        (store, pk)
    }

    #[tokio::test]
    async fn devices_page_by_id_and_the_log_verifies_until_tampered_with() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pk) = open(dir.path());
        let g = GroupId::new("g").unwrap();
        store
            .create_group(
                NewGroup {
                    name: g.clone(),
                    description: String::new(),
                },
                Actor::System,
            )
            .await
            .unwrap();
        for id in ["c", "a", "b"] {
            store
                .create_device(
                    NewDevice {
                        id: DeviceId::new(id).unwrap(),
                        group: g.clone(),
                        labels: Default::default(),
                        hardware_model: None,
                        manufacturer_ca: None,
                    },
                    Actor::System,
                )
                .await
                .unwrap();
        }
        let ids = |page: &[crate::DevicePosture]| -> Vec<String> {
            page.iter().map(|d| d.device.id.to_string()).collect()
        };
        let first = store.posture_devices(None, 2).await.unwrap();
        assert_eq!(ids(&first), ["a", "b"]);
        assert!(first.iter().all(|d| d.certificates.is_empty()));
        let rest = store
            .posture_devices(Some(DeviceId::new("b").unwrap()), 2)
            .await
            .unwrap();
        assert_eq!(ids(&rest), ["c"]);

        store
            .append_audit(
                Actor::System,
                AuditEvent::AuthenticationFailed { reason: "x".into() },
            )
            .await
            .unwrap();
        let report = store.verify_audit(pk).await.unwrap().unwrap();
        assert!(report.entries >= 5, "{report:?}");
        let conn = rusqlite::Connection::open(dir.path().join("db.sqlite")).unwrap();
        conn.execute("UPDATE audit_log SET actor = 'someone' WHERE seq = 2", [])
            .unwrap();
        let verdict = store.verify_audit(pk).await.unwrap();
        assert_eq!(verdict.unwrap_err().seq(), 2);
    }
}

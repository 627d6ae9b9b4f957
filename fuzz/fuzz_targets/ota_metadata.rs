//! TUF metadata from the network: the input replaces one file of a real,
//! signed repository (timestamp, snapshot, targets, the rotated root, or
//! the device's trusted root), served from memory to the device-side
//! verifier (`UpdateClient::load`, then `check`/`latest_for`); the same
//! bytes go to the server's parsers of offline-signed metadata
//! (`accept_signed_targets`, `accept_root`, `describe_targets`). Nothing
//! may panic. The first byte picks the file; with its high bit set the rest
//! is spliced into the genuine file at an offset (from the next two bytes),
//! so near-valid metadata is reached without a seed corpus.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bulwark_ota::tough::{self, Transport, TransportError, TransportErrorKind, TransportStream};
use bulwark_ota::url::Url;
use bulwark_ota::{
    Device, Expiries, HardwareModel, NewTarget, OnlineKeys, ReleaseInfo, Repository, RootSpec,
    SigningKey, TargetName, UpdateClient,
};
use libfuzzer_sys::fuzz_target;

const TRUSTED_ROOT: &str = "<trusted root>";
const FILES: [&str; 5] = [
    "timestamp.json",
    "1.snapshot.json",
    "1.targets.json",
    "2.root.json",
    TRUSTED_ROOT,
];

struct Fixture {
    _dir: tempfile::TempDir,
    repo: Repository,
    online: OnlineKeys,
    trusted_root: Vec<u8>,
    files: HashMap<String, Vec<u8>>,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<SigningKey> = (0..4).map(|_| SigningKey::generate().unwrap()).collect();
        let spec = RootSpec::single(&keys[0], &keys[1], &keys[2], &keys[3]);
        let now = SystemTime::now();
        let repo = Repository::create(dir.path(), &spec, &[&keys[0]], Expiries::default(), now)
            .unwrap();
        let copy = |k: &SigningKey| SigningKey::from_pkcs8_der(k.pkcs8_der()).unwrap();
        let online = OnlineKeys {
            snapshot: vec![copy(&keys[2])],
            timestamp: vec![copy(&keys[3])],
        };
        let artifact = repo.store_artifact(&b"firmware"[..], 1024).unwrap();
        let release = ReleaseInfo::new(
            vec![HardwareModel::new("m1").unwrap()],
            "1.0.0".parse().unwrap(),
            None,
        )
        .unwrap();
        let target = NewTarget {
            name: TargetName::new("fw.bin").unwrap(),
            artifact,
            release,
        };
        repo.publish(&[target], &[], &[&keys[1]], &online, now).unwrap();
        repo.rotate_root(&spec, &[&keys[0]], now).unwrap();
        let served = repo.served();
        let mut files = HashMap::new();
        for name in ["1.root.json", "2.root.json", "timestamp.json", "1.snapshot.json", "1.targets.json"] {
            files.insert(name.to_owned(), std::fs::read(served.join(name)).unwrap());
        }
        let trusted_root = files["1.root.json"].clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Fixture {
            _dir: dir,
            repo,
            online,
            trusted_root,
            files,
            rt,
        }
    })
}

/// Serves files from memory under `mem://repo/`.
#[derive(Debug, Clone)]
struct MemTransport(Arc<HashMap<String, Vec<u8>>>);

#[tough::async_trait]
impl Transport for MemTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let file = url.path().trim_start_matches('/');
        match self.0.get(file) {
            Some(bytes) => {
                let chunk: Result<tough::Bytes, TransportError> =
                    Ok(tough::Bytes::from(bytes.clone()));
                Ok(Box::pin(futures::stream::iter(vec![chunk])))
            }
            None => Err(TransportError::new(TransportErrorKind::FileNotFound, url)),
        }
    }
}

fn splice(original: &[u8], data: &[u8]) -> Vec<u8> {
    let (at, payload) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => (original.len(), data),
    };
    let at = at % (original.len() + 1);
    let mut out = original.to_vec();
    let end = (at + payload.len()).min(out.len());
    out.splice(at..end, payload.iter().copied());
    out
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let which = FILES[usize::from(mode & 0x7f) % FILES.len()];
    let original = if which == TRUSTED_ROOT {
        &fx.trusted_root
    } else {
        &fx.files[which]
    };
    let bytes = if mode & 0x80 != 0 {
        splice(original, rest)
    } else {
        rest.to_vec()
    };

    // Server side: offline-signed metadata and the signer's summary.
    let now = SystemTime::now();
    let _ = bulwark_ota::describe_targets(&bytes);
    assert!(fx.repo.accept_signed_targets(&bytes, &fx.online, now).is_err());
    assert!(fx.repo.accept_root(&bytes, now).is_err());

    // Device side: the whole verification chain over the modified set.
    let mut files = fx.files.clone();
    let trusted = if which == TRUSTED_ROOT {
        bytes
    } else {
        files.insert(which.to_owned(), bytes);
        fx.trusted_root.clone()
    };
    let transport = MemTransport(Arc::new(files));
    let datastore = tempfile::tempdir().unwrap();
    let base = Url::parse("mem://repo/").unwrap();
    let targets = Url::parse("mem://repo/targets/").unwrap();
    let device = Device {
        model: HardwareModel::new("m1").unwrap(),
        floor: None,
    };
    fx.rt.block_on(async {
        if let Ok(client) =
            UpdateClient::load(&trusted, datastore.path(), base, targets, transport).await
        {
            let _ = client.check(&TargetName::new("fw.bin").unwrap(), &device);
            let _ = client.latest_for(&device);
        }
    });
});

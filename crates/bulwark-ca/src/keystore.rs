//! Secrets at rest: a directory of AES-256-GCM sealed keys under a
//! passphrase-derived key-encryption key (KEK).
//!
//! ```text
//! <dir>/                  mode 0700
//!   kek.json              salt, Argon2id parameters, verifier
//!   <name>.key.enc        "BWK1" || nonce(12) || AES-256-GCM(KEK, secret, aad)
//! ```
//!
//! The KEK is Argon2id(passphrase, salt) and never touches the disk. The
//! verifier is a fixed string sealed under the KEK, so a wrong passphrase
//! is reported as such when the store is opened rather than as a decryption
//! failure later. Each key file's additional authenticated data binds it to
//! its name, so renaming `a.key.enc` to `b.key.enc` is detected as tampering.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::fsutil;
use crate::CaError;

const KEK_FILE: &str = "kek.json";
const FORMAT: &str = "bulwark-keystore-v1";
const FILE_MAGIC: &[u8; 4] = b"BWK1";
const SALT_LEN: usize = 16;
const TAG_LEN: usize = 16;
const VERIFIER_PLAINTEXT: &[u8] = b"bulwark key store verifier v1";
const VERIFIER_AAD: &[u8] = b"bulwark-keystore-v1 verifier";
const KEY_AAD_PREFIX: &[u8] = b"bulwark-keystore-v1 key:";

/// A passphrase that unlocks a [`Keystore`]. Zeroized on drop; never printed.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// From a string, e.g. the value of an environment variable. Trailing
    /// `\n`/`\r` are trimmed; an empty result is refused.
    pub fn new(secret: String) -> Result<Self, CaError> {
        Self::from_bytes(secret.into_bytes())
    }

    /// From raw bytes, e.g. the contents of a passphrase file. Trailing
    /// `\n`/`\r` are trimmed; an empty result is refused.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, CaError> {
        let mut bytes = Zeroizing::new(bytes);
        while matches!(bytes.last(), Some(b'\n' | b'\r')) {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(CaError::EmptyPassphrase);
        }
        Ok(Self(bytes))
    }

    /// Reads a passphrase file (see [`Passphrase::from_bytes`]).
    pub fn read_file(path: &Path) -> Result<Self, CaError> {
        Self::from_bytes(fsutil::read(path)?)
    }

    fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(***)")
    }
}

/// Argon2id cost parameters for deriving the key-encryption key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// OWASP's recommended Argon2id minimum: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            m_cost_kib: 19_456,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Upper bounds, so a tampered `kek.json` cannot make `open` exhaust memory or time.
    const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
    const MAX_T_COST: u32 = 64;
    const MAX_P_COST: u32 = 16;

    /// Cheap parameters for tests only: they give passphrases no real protection.
    pub fn fast_for_tests() -> Self {
        Self {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    fn to_argon2(self) -> Result<argon2::Argon2<'static>, CaError> {
        let bad = |detail: String| CaError::KdfParams { detail };
        if self.m_cost_kib > Self::MAX_M_COST_KIB {
            return Err(bad(format!("m_cost_kib above {}", Self::MAX_M_COST_KIB)));
        }
        if self.t_cost == 0 || self.t_cost > Self::MAX_T_COST {
            return Err(bad(format!("t_cost must be 1..={}", Self::MAX_T_COST)));
        }
        if self.p_cost == 0 || self.p_cost > Self::MAX_P_COST {
            return Err(bad(format!("p_cost must be 1..={}", Self::MAX_P_COST)));
        }
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| bad(e.to_string()))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

/// The contents of `kek.json`.
#[derive(Serialize, Deserialize)]
struct KekFile {
    format: String,
    kdf: String,
    params: KdfParams,
    /// Base64 of 16 random bytes.
    salt: String,
    /// Base64 of the sealed verifier (nonce || ciphertext || tag).
    verifier: String,
}

/// A directory of sealed secrets, unlocked with a [`Passphrase`].
pub struct Keystore {
    dir: PathBuf,
    kek: LessSafeKey,
}

impl fmt::Debug for Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keystore")
            .field("dir", &self.dir)
            .field("kek", &"***")
            .finish()
    }
}

impl Keystore {
    /// Creates `<dir>` (mode 0700) with `kek.json` holding a fresh random
    /// salt, the KDF parameters and a verifier, so that a wrong passphrase
    /// gives a clear error ("wrong passphrase for key store at ...") on
    /// [`Keystore::open`]. `dir` may exist if it is empty.
    pub fn create(dir: &Path, pass: &Passphrase, kdf: KdfParams) -> Result<Self, CaError> {
        let argon = kdf.to_argon2()?;
        if dir.exists() {
            let mut entries =
                std::fs::read_dir(dir).map_err(|e| CaError::io("read directory", dir, e))?;
            if entries.next().is_some() {
                return Err(CaError::AlreadyInitialized { path: dir.into() });
            }
            std::fs::set_permissions(
                dir,
                std::os::unix::fs::PermissionsExt::from_mode(fsutil::PRIVATE_DIR),
            )
            .map_err(|e| CaError::io("set permissions on", dir, e))?;
        } else {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| CaError::io("create directory", parent, e))?;
            }
            fsutil::create_dir(dir, fsutil::PRIVATE_DIR)?;
        }

        let mut salt = [0u8; SALT_LEN];
        random(&mut salt)?;
        let kek = derive_kek(&argon, pass, &salt)?;
        let verifier = seal(&kek, VERIFIER_AAD, VERIFIER_PLAINTEXT)?;
        let file = KekFile {
            format: FORMAT.into(),
            kdf: "argon2id".into(),
            params: kdf,
            salt: B64.encode(salt),
            verifier: B64.encode(verifier),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| CaError::CorruptKeystore {
            path: dir.join(KEK_FILE),
            detail: e.to_string(),
        })?;
        fsutil::write_atomic(&dir.join(KEK_FILE), &json, fsutil::PRIVATE_FILE)?;
        Ok(Self {
            dir: dir.into(),
            kek,
        })
    }

    /// Opens an existing key store, checking the passphrase against the verifier.
    pub fn open(dir: &Path, pass: &Passphrase) -> Result<Self, CaError> {
        let path = dir.join(KEK_FILE);
        if !path.exists() {
            return Err(CaError::NotInitialized { path: dir.into() });
        }
        let corrupt = |detail: String| CaError::CorruptKeystore {
            path: path.clone(),
            detail,
        };
        let file: KekFile =
            serde_json::from_slice(&fsutil::read(&path)?).map_err(|e| corrupt(e.to_string()))?;
        if file.format != FORMAT || file.kdf != "argon2id" {
            return Err(corrupt(format!(
                "unsupported format {:?} / kdf {:?}",
                file.format, file.kdf
            )));
        }
        let salt = B64
            .decode(&file.salt)
            .map_err(|_| corrupt("salt is not base64".into()))?;
        if salt.len() != SALT_LEN {
            return Err(corrupt(format!("salt must be {SALT_LEN} bytes")));
        }
        let verifier = B64
            .decode(&file.verifier)
            .map_err(|_| corrupt("verifier is not base64".into()))?;
        let kek = derive_kek(&file.params.to_argon2()?, pass, &salt)?;
        match open_sealed(&kek, VERIFIER_AAD, &verifier) {
            Ok(plain) if plain.as_slice() == VERIFIER_PLAINTEXT => Ok(Self {
                dir: dir.into(),
                kek,
            }),
            _ => Err(CaError::WrongPassphrase { path: dir.into() }),
        }
    }

    /// The same store after its directory was renamed to `dir`.
    pub(crate) fn moved_to(self, dir: PathBuf) -> Self {
        Self { dir, kek: self.kek }
    }

    /// The key store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Seals `secret` into `<dir>/<name>.key.enc` (mode 0600), replacing any
    /// previous key of that name atomically.
    pub fn store(&self, name: &str, secret: &[u8]) -> Result<(), CaError> {
        let path = self.key_path(name)?;
        let sealed = seal(&self.kek, &key_aad(name), secret)?;
        fsutil::write_atomic(&path, &sealed, fsutil::PRIVATE_FILE)
    }

    /// Unseals the key called `name`.
    pub fn load(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, CaError> {
        let path = self.key_path(name)?;
        let sealed = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CaError::KeyNotFound {
                    name: name.into(),
                    dir: self.dir.clone(),
                })
            }
            Err(e) => return Err(CaError::io("read", path, e)),
        };
        open_sealed(&self.kek, &key_aad(name), &sealed)
            .map_err(|()| CaError::KeyTampered { name: name.into() })
    }

    fn key_path(&self, name: &str) -> Result<PathBuf, CaError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(CaError::InvalidKeyName { name: name.into() });
        }
        Ok(self.dir.join(format!("{name}.key.enc")))
    }
}

fn key_aad(name: &str) -> Vec<u8> {
    [KEY_AAD_PREFIX, name.as_bytes()].concat()
}

fn random(buf: &mut [u8]) -> Result<(), CaError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| CaError::Crypto {
        detail: "random number generation",
    })
}

fn derive_kek(
    argon: &argon2::Argon2<'_>,
    pass: &Passphrase,
    salt: &[u8],
) -> Result<LessSafeKey, CaError> {
    let mut kek = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(pass.expose(), salt, kek.as_mut())
        .map_err(|_| CaError::Crypto {
            detail: "argon2id key derivation",
        })?;
    let key = UnboundKey::new(&AES_256_GCM, kek.as_ref()).map_err(|_| CaError::Crypto {
        detail: "aes-256-gcm key setup",
    })?;
    Ok(LessSafeKey::new(key))
}

/// `FILE_MAGIC || nonce || AES-256-GCM(kek, plaintext, aad) || tag`.
fn seal(kek: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CaError> {
    let mut nonce = [0u8; NONCE_LEN];
    random(&mut nonce)?;
    let mut in_out = Zeroizing::new(plaintext.to_vec());
    kek.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut *in_out,
    )
    .map_err(|_| CaError::Crypto {
        detail: "aes-256-gcm seal",
    })?;
    Ok([FILE_MAGIC.as_slice(), &nonce, &in_out].concat())
}

fn open_sealed(kek: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, ()> {
    let body = sealed.strip_prefix(FILE_MAGIC.as_slice()).ok_or(())?;
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(());
    }
    let (nonce, ciphertext) = body.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| ())?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let len = kek
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| ())?
        .len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
#[path = "keystore_tests.rs"]
mod tests;

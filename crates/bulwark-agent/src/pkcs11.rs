//! The device key on a PKCS#11 token (cargo feature `pkcs11`), through the
//! `cryptoki` crate; tested against SoftHSM2.
//!
//! The key pair is generated on the token as ECDSA P-256 with the private
//! key `CKA_SENSITIVE`, not `CKA_EXTRACTABLE` and `CKA_TOKEN` (persistent):
//! it never leaves the token. The CSR is signed by the token through rcgen's
//! [`rcgen::SigningKey`] trait, and TLS client authentication through a
//! [`rustls::sign::SigningKey`] whose signatures the token makes
//! (`CKM_ECDSA` over a SHA-256 digest computed here, so tokens without
//! `CKM_ECDSA_SHA256` work too; the raw `r || s` answer is DER-encoded as
//! TLS and X.509 expect).
//!
//! Objects are found by `CKA_LABEL`: `<key_label>` for the current key,
//! `<key_label>.next` during a renewal. One read-write session, logged in as
//! the user, is shared behind a mutex (PKCS#11 sessions are not thread-safe).

use std::path::Path;
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

use crate::AgentError;

/// DER of the OID prime256v1 (1.2.840.10045.3.1.7), the `CKA_EC_PARAMS` of P-256.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn ck(what: impl Into<String>) -> impl FnOnce(CkError) -> AgentError {
    let what = what.into();
    move |source| AgentError::Pkcs11 {
        what,
        source: Some(source),
    }
}

/// An open, logged-in session on the token that holds the device key.
pub struct Token {
    session: Mutex<Session>,
    key_label: String,
    // Keeps the module loaded for as long as the session lives.
    _module: Pkcs11,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("key_label", &self.key_label)
            .finish()
    }
}

impl Token {
    /// Loads `module`, finds the token labelled `token_label` and logs in.
    pub fn open(
        module: &Path,
        token_label: &str,
        key_label: &str,
        pin: &str,
    ) -> Result<Token, AgentError> {
        let pkcs11 = Pkcs11::new(module)
            .map_err(ck(format!("cannot load the module {}", module.display())))?;
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(ck("C_Initialize failed")(e)),
        }
        let slots = pkcs11
            .get_slots_with_token()
            .map_err(ck("cannot list the slots"))?;
        let mut found = None;
        for slot in slots {
            let info = pkcs11
                .get_token_info(slot)
                .map_err(ck("cannot read token information"))?;
            if info.label().trim_end() == token_label {
                found = Some(slot);
                break;
            }
        }
        let slot = found.ok_or_else(|| AgentError::Pkcs11 {
            what: format!("no token labelled {token_label:?}"),
            source: None,
        })?;
        let session = pkcs11
            .open_rw_session(slot)
            .map_err(ck("cannot open a session"))?;
        let pin = AuthPin::from(pin);
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(ck("login refused (wrong PIN?)")(e)),
        }
        Ok(Token {
            session: Mutex::new(session),
            key_label: key_label.to_owned(),
            _module: pkcs11,
        })
    }

    fn label(&self, next: bool) -> String {
        if next {
            format!("{}.next", self.key_label)
        } else {
            self.key_label.clone()
        }
    }

    fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, AgentError>,
    ) -> Result<T, AgentError> {
        let session = self.session.lock().map_err(|_| AgentError::Pkcs11 {
            what: "session lock poisoned".to_owned(),
            source: None,
        })?;
        f(&session)
    }

    fn find_pair(
        session: &Session,
        label: &str,
    ) -> Result<Option<(ObjectHandle, ObjectHandle)>, AgentError> {
        let find = |class| {
            session
                .find_objects(&[
                    Attribute::Class(class),
                    Attribute::Label(label.as_bytes().to_vec()),
                ])
                .map_err(ck("cannot search the token"))
        };
        let private = find(ObjectClass::PRIVATE_KEY)?;
        let public = find(ObjectClass::PUBLIC_KEY)?;
        match (private.as_slice(), public.as_slice()) {
            ([], []) => Ok(None),
            ([private], [public]) => Ok(Some((*private, *public))),
            _ => Err(AgentError::Pkcs11 {
                what: format!(
                    "the token holds {} private and {} public keys labelled {label:?}; expected one of each",
                    private.len(),
                    public.len()
                ),
                source: None,
            }),
        }
    }

    /// The key pair labelled for `next` (renewal) or current use, if any.
    pub fn find(self: &Arc<Self>, next: bool) -> Result<Option<TokenKey>, AgentError> {
        let label = self.label(next);
        let pair = self.with_session(|s| Self::find_pair(s, &label))?;
        pair.map(|(private, public)| self.key(private, public))
            .transpose()
    }

    /// The key pair for `next` or current use, generated on the token if absent.
    pub fn load_or_create(self: &Arc<Self>, next: bool) -> Result<TokenKey, AgentError> {
        if let Some(key) = self.find(next)? {
            return Ok(key);
        }
        let label = self.label(next).into_bytes();
        // C_GenerateKeyPair answers (public, private).
        let (public, private) = self.with_session(|s| {
            let public_template = [
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(P256_PARAMS.to_vec()),
                Attribute::Label(label.clone()),
            ];
            let private_template = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::KeyType(KeyType::EC),
                Attribute::Label(label.clone()),
            ];
            s.generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &public_template,
                &private_template,
            )
            .map_err(ck("cannot generate a P-256 key pair on the token"))
        })?;
        self.key(private, public)
    }

    fn key(
        self: &Arc<Self>,
        private: ObjectHandle,
        public: ObjectHandle,
    ) -> Result<TokenKey, AgentError> {
        let point = self.with_session(|s| {
            let attrs = s
                .get_attributes(public, &[AttributeType::EcPoint, AttributeType::EcParams])
                .map_err(ck("cannot read the public key"))?;
            let mut point = None;
            for attr in attrs {
                match attr {
                    Attribute::EcPoint(p) => point = Some(p),
                    Attribute::EcParams(p) if p != P256_PARAMS => {
                        return Err(AgentError::Pkcs11 {
                            what: "the key on the token is not P-256".to_owned(),
                            source: None,
                        })
                    }
                    _ => {}
                }
            }
            point.ok_or_else(|| AgentError::Pkcs11 {
                what: "the public key has no CKA_EC_POINT".to_owned(),
                source: None,
            })
        })?;
        Ok(TokenKey {
            token: self.clone(),
            private,
            point: uncompressed_point(&point)?,
        })
    }

    /// Destroys the current key pair and relabels the renewal pair as
    /// current. Safe to repeat after a crash half-way.
    pub fn commit_next(&self) -> Result<(), AgentError> {
        let current = self.label(false);
        let next = self.label(true);
        self.with_session(|s| {
            let Some((np, nq)) = Self::find_pair(s, &next)? else {
                return Err(AgentError::Pkcs11 {
                    what: "no renewal key on the token to commit".to_owned(),
                    source: None,
                });
            };
            if let Some((cp, cq)) = Self::find_pair(s, &current)? {
                s.destroy_object(cp)
                    .map_err(ck("cannot destroy the old key"))?;
                s.destroy_object(cq)
                    .map_err(ck("cannot destroy the old key"))?;
            }
            for handle in [np, nq] {
                s.update_attributes(handle, &[Attribute::Label(current.as_bytes().to_vec())])
                    .map_err(ck("cannot relabel the renewal key"))?;
            }
            Ok(())
        })
    }

    /// Destroys a renewal key pair that will not be used.
    pub fn discard_next(&self) -> Result<(), AgentError> {
        let next = self.label(true);
        self.with_session(|s| {
            if let Some((p, q)) = Self::find_pair(s, &next)? {
                s.destroy_object(p)
                    .map_err(ck("cannot destroy the renewal key"))?;
                s.destroy_object(q)
                    .map_err(ck("cannot destroy the renewal key"))?;
            }
            Ok(())
        })
    }

    /// Whether the private key object can be extracted (it must not).
    pub fn is_extractable(&self, key: &TokenKey) -> Result<bool, AgentError> {
        self.with_session(|s| {
            let attrs = s
                .get_attributes(
                    key.private,
                    &[AttributeType::Extractable, AttributeType::Sensitive],
                )
                .map_err(ck("cannot read key attributes"))?;
            let mut extractable = true;
            let mut sensitive = false;
            for a in attrs {
                match a {
                    Attribute::Extractable(v) => extractable = v,
                    Attribute::Sensitive(v) => sensitive = v,
                    _ => {}
                }
            }
            Ok(extractable || !sensitive)
        })
    }
}

/// The 65-byte uncompressed point from `CKA_EC_POINT`, which tokens give
/// either DER-wrapped (an OCTET STRING, as the standard says) or raw.
fn uncompressed_point(attr: &[u8]) -> Result<Vec<u8>, AgentError> {
    let raw = match attr {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        _ => attr,
    };
    if raw.len() != 65 || raw[0] != 0x04 {
        return Err(AgentError::Pkcs11 {
            what: "CKA_EC_POINT is not an uncompressed P-256 point".to_owned(),
            source: None,
        });
    }
    Ok(raw.to_vec())
}

/// One key pair on the token.
pub struct TokenKey {
    token: Arc<Token>,
    private: ObjectHandle,
    point: Vec<u8>,
}

impl TokenKey {
    /// The token this key lives on.
    pub fn token(&self) -> &Arc<Token> {
        &self.token
    }

    /// An ECDSA P-256 SHA-256 signature of `message`, DER-encoded.
    pub fn sign_der(&self, message: &[u8]) -> Result<Vec<u8>, AgentError> {
        let digest = crate::sha256(message);
        let raw = self.token.with_session(|s| {
            s.sign(&Mechanism::Ecdsa, self.private, &digest)
                .map_err(ck("the token refused to sign"))
        })?;
        ecdsa_raw_to_der(&raw)
    }
}

impl rcgen::PublicKeyData for TokenKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for TokenKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.sign_der(msg).map_err(|e| {
            tracing::warn!(error = %e, "pkcs#11 signature failed");
            rcgen::Error::RemoteKeyError
        })
    }
}

/// `r || s` (32 + 32 bytes) as a DER `Ecdsa-Sig-Value`.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, AgentError> {
    if raw.len() != 64 {
        return Err(AgentError::Pkcs11 {
            what: format!("ECDSA signature of {} bytes, expected 64", raw.len()),
            source: None,
        });
    }
    fn integer(v: &[u8]) -> Vec<u8> {
        let start = v.iter().position(|b| *b != 0).unwrap_or(v.len() - 1);
        let v = &v[start..];
        let mut out = vec![0x02];
        if v[0] & 0x80 != 0 {
            out.push((v.len() + 1) as u8);
            out.push(0);
        } else {
            out.push(v.len() as u8);
        }
        out.extend_from_slice(v);
        out
    }
    let (r, s) = raw.split_at(32);
    let body = [integer(r), integer(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    Ok(out)
}

/// A rustls client-auth key whose signatures the token makes.
#[derive(Clone)]
pub struct TlsKey(Arc<TokenKey>);

impl TlsKey {
    pub(crate) fn new(key: Arc<TokenKey>) -> TlsKey {
        TlsKey(key)
    }
}

impl std::fmt::Debug for TlsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsKey(pkcs#11 P-256)")
    }
}

impl rustls::sign::SigningKey for TlsKey {
    fn choose_scheme(
        &self,
        offered: &[rustls::SignatureScheme],
    ) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&rustls::SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(self.clone()) as Box<dyn rustls::sign::Signer>)
    }

    fn public_key(&self) -> Option<rustls_pki_types::SubjectPublicKeyInfoDer<'_>> {
        use rcgen::PublicKeyData as _;
        Some(self.0.subject_public_key_info().into())
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::ECDSA
    }
}

impl rustls::sign::Signer for TlsKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.0
            .sign_der(message)
            .map_err(|e| rustls::Error::General(format!("pkcs#11 signature failed: {e}")))
    }

    fn scheme(&self) -> rustls::SignatureScheme {
        rustls::SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

#[cfg(test)]
#[path = "pkcs11_tests.rs"]
mod tests;

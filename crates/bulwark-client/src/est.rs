//! EST (RFC 7030) enrollment: `/.well-known/est/{cacerts,simpleenroll,simplereenroll}`.
//!
//! Requests carry a base64 DER PKCS#10 (`application/pkcs10`); answers are
//! base64 PKCS#7 certs-only (`application/pkcs7-mime; smime-type=certs-only`).
//! The methods return the PKCS#7 as DER; [`pkcs7_certs`] takes the
//! certificates out of it.
//!
//! Credentials differ per call: an enrollment token (Bearer), a
//! username/password (Basic), or the client identity set with
//! [`Client::with_identity`] (a claim certificate for first enrollment, the
//! device's own certificate for re-enrollment). The operator token is never
//! sent to EST endpoints.

use base64::Engine as _;
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use der::asn1::ObjectIdentifier;
use der::{Decode as _, Encode as _};
use reqwest::{Method, RequestBuilder};

use crate::{Client, ClientError};

/// `id-signedData` (RFC 5652 §5.1).
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");

/// Media type of an EST enrollment request body.
pub const PKCS10: &str = "application/pkcs10";

impl Client {
    /// `GET /.well-known/est/cacerts`: the CA certificates as PKCS#7 DER.
    pub async fn est_cacerts(&self) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&[".well-known", "est", "cacerts"], &[]);
        self.send_pkcs7(self.anonymous(Method::GET, url)).await
    }

    /// `POST /.well-known/est/simpleenroll` authenticated with an enrollment token.
    pub async fn est_simpleenroll_bearer(
        &self,
        token: &str,
        csr_der: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let req = self
            .enroll_request("simpleenroll", csr_der)
            .bearer_auth(token);
        self.send_pkcs7(req).await
    }

    /// `POST /.well-known/est/simpleenroll` authenticated with HTTP Basic.
    pub async fn est_simpleenroll_basic(
        &self,
        user: &str,
        password: &str,
        csr_der: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let req = self
            .enroll_request("simpleenroll", csr_der)
            .basic_auth(user, Some(password));
        self.send_pkcs7(req).await
    }

    /// `POST /.well-known/est/simpleenroll` authenticated by the client
    /// identity alone (a claim certificate).
    pub async fn est_simpleenroll_mtls(&self, csr_der: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.require_identity("est_simpleenroll_mtls")?;
        self.send_pkcs7(self.enroll_request("simpleenroll", csr_der))
            .await
    }

    /// `POST /.well-known/est/simplereenroll` authenticated by the device's
    /// current certificate (the client identity).
    pub async fn est_simplereenroll(&self, csr_der: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.require_identity("est_simplereenroll")?;
        self.send_pkcs7(self.enroll_request("simplereenroll", csr_der))
            .await
    }

    fn enroll_request(&self, op: &str, csr_der: &[u8]) -> RequestBuilder {
        let url = self.url(&[".well-known", "est", op], &[]);
        let body = base64::engine::general_purpose::STANDARD.encode(csr_der);
        self.anonymous(Method::POST, url)
            .header(reqwest::header::CONTENT_TYPE, PKCS10)
            .header("content-transfer-encoding", "base64")
            .body(body)
    }

    async fn send_pkcs7(&self, req: RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let body = self.send_bytes(req).await?;
        decode_base64_body(&body)
    }
}

/// Decodes a base64 body, ignoring ASCII whitespace (EST servers wrap lines).
pub(crate) fn decode_base64_body(body: &[u8]) -> Result<Vec<u8>, ClientError> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(ClientError::InvalidResponse {
            what: "empty EST response".to_owned(),
            source: None,
        });
    }
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| ClientError::invalid("EST response is not base64", e))
}

/// The certificates (DER) inside a PKCS#7 / CMS certs-only `SignedData`.
///
/// The certificates come back in DER set order (CMS `SET OF`), which is not
/// necessarily chain order: pick the leaf by its subject or public key.
/// Non-X.509 certificate choices are skipped.
pub fn pkcs7_certs(der: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
    let ci = ContentInfo::from_der(der)
        .map_err(|e| ClientError::invalid("PKCS#7 is not a CMS ContentInfo", e))?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(ClientError::InvalidResponse {
            what: format!("PKCS#7 content type is {}, not signedData", ci.content_type),
            source: None,
        });
    }
    let sd: SignedData = ci
        .content
        .decode_as()
        .map_err(|e| ClientError::invalid("PKCS#7 signedData is malformed", e))?;
    let Some(set) = sd.certificates else {
        return Ok(Vec::new());
    };
    set.0
        .iter()
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(cert) => Some(cert),
            CertificateChoices::Other(_) => None,
        })
        .map(|cert| {
            cert.to_der()
                .map_err(|e| ClientError::invalid("PKCS#7 certificate cannot be re-encoded", e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cms::cert::x509::Certificate;

    fn self_signed(name: &str) -> Vec<u8> {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        ck.cert.der().to_vec()
    }

    fn certs_only(ders: &[Vec<u8>]) -> Vec<u8> {
        let certs: Vec<Certificate> = ders
            .iter()
            .map(|d| Certificate::from_der(d).unwrap())
            .collect();
        ContentInfo::try_from(certs).unwrap().to_der().unwrap()
    }

    #[test]
    fn extracts_every_certificate() {
        let a = self_signed("a.example");
        let b = self_signed("b.example");
        let p7 = certs_only(&[a.clone(), b.clone()]);
        let mut got = pkcs7_certs(&p7).unwrap();
        let mut want = vec![a, b];
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn base64_body_tolerates_line_breaks() {
        let a = self_signed("a.example");
        let p7 = certs_only(std::slice::from_ref(&a));
        let b64 = base64::engine::general_purpose::STANDARD.encode(&p7);
        let wrapped: String = b64
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
            .collect();
        let der = decode_base64_body(wrapped.as_bytes()).unwrap();
        assert_eq!(pkcs7_certs(&der).unwrap(), vec![a]);
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(
            decode_base64_body(b" \n"),
            Err(ClientError::InvalidResponse { .. })
        ));
        assert!(decode_base64_body(b"!!!").is_err());
        assert!(pkcs7_certs(b"\x30\x03\x02\x01\x01").is_err());
        // A ContentInfo of type id-data, not signedData.
        let data = ContentInfo {
            content_type: ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1"),
            content: der::Any::from(der::asn1::OctetStringRef::new(b"x").unwrap()),
        };
        let err = pkcs7_certs(&data.to_der().unwrap()).unwrap_err();
        assert!(err.to_string().contains("not signedData"), "{err}");
    }
}

//! Encodings used by EST (RFC 7030): certs-only PKCS#7 and base64 bodies.
//!
//! EST returns certificates as a degenerate CMS SignedData ("certs-only",
//! RFC 5652 §5 with no signers) and transfers every DER body as base64
//! (`Content-Transfer-Encoding: base64`). These functions are pure
//! encoders; reading the HTTP body and limiting its size is the caller's job.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
use der::asn1::{ObjectIdentifier, SetOfVec};
use der::{Any, Decode, Encode};

use crate::{pem, CaError};

/// id-data (RFC 5652 §4).
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// id-signedData (RFC 5652 §5.1).
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");

/// Base64 line length for EST bodies, as MIME uses.
const LINE_LEN: usize = 64;

/// Wraps DER certificates in a certs-only PKCS#7: a ContentInfo of type
/// id-signedData holding SignedData version 1, no digest algorithms, an
/// empty id-data encapsulated content, the certificates and no signers.
///
/// The certificates form a DER `SET OF`, so they are stored in DER order,
/// not the order given. Duplicates are refused.
pub fn certs_only_pkcs7(certs_der: &[&[u8]]) -> Result<Vec<u8>, CaError> {
    let certs = certs_der
        .iter()
        .map(|der| x509_cert::Certificate::from_der(der).map(CertificateChoices::Certificate))
        .collect::<Result<Vec<_>, _>>()?;
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(SetOfVec::try_from(certs)?)),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };
    let info = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed)?,
    };
    Ok(info.to_der()?)
}

/// Decodes an EST base64 body: base64 with arbitrary whitespace and CRLF
/// line breaks. A PEM `CERTIFICATE REQUEST` (or `NEW CERTIFICATE REQUEST`)
/// block is accepted too, for clients that post PEM.
pub fn decode_base64_body(body: &[u8]) -> Result<Vec<u8>, CaError> {
    let text = std::str::from_utf8(body).map_err(|_| CaError::Base64 {
        detail: "body is not ascii".into(),
    })?;
    if text.contains("-----BEGIN ") {
        return pem::decode_all(text)?
            .into_iter()
            .find(|b| b.label == "CERTIFICATE REQUEST" || b.label == "NEW CERTIFICATE REQUEST")
            .map(|b| b.der)
            .ok_or_else(|| CaError::Base64 {
                detail: "pem body holds no CERTIFICATE REQUEST block".into(),
            });
    }
    pem::decode_base64_lenient(text)
}

/// Encodes `der` as base64 in lines of 64 characters, each ended by LF.
///
/// RFC 8951 §3.4 lets EST peers ignore whitespace; LF rather than CRLF keeps
/// the answer readable by every decoder, including GNU `base64 -d`, which
/// refuses a carriage return.
pub fn encode_base64_body(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + 2 * (b64.len() / LINE_LEN + 1));
    for line in b64.as_bytes().chunks(LINE_LEN) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{openssl_ok, TestCa};

    #[test]
    fn base64_body_round_trip() {
        let der: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let body = encode_base64_body(&der);
        assert!(body.ends_with('\n') && !body.contains('\r'));
        for line in body.split_terminator('\n') {
            assert!(line.len() <= 64, "{line:?}");
        }
        assert_eq!(body.split_terminator('\n').next().map(str::len), Some(64));
        assert_eq!(decode_base64_body(body.as_bytes()).unwrap(), der);
        // Arbitrary whitespace is fine.
        let messy: String = body.chars().flat_map(|c| [c, ' ']).collect();
        assert_eq!(decode_base64_body(messy.as_bytes()).unwrap(), der);
        assert_eq!(encode_base64_body(b""), "");
    }

    #[test]
    fn base64_body_refuses_garbage() {
        for bad in [
            &b"!!!"[..],
            b"",
            b"  \r\n",
            b"\xff\xfe",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            let err = decode_base64_body(bad).unwrap_err();
            assert!(matches!(err, CaError::Base64 { .. }), "{bad:?}: {err:?}");
        }
    }

    #[test]
    fn base64_body_accepts_pem_csr() {
        let csr = crate::testutil::rcgen_csr(&rcgen::PKCS_ECDSA_P256_SHA256);
        let pem = pem::encode("CERTIFICATE REQUEST", &csr);
        assert_eq!(decode_base64_body(pem.as_bytes()).unwrap(), csr);
    }

    #[test]
    fn pkcs7_is_readable_by_openssl() {
        let t = TestCa::new();
        let p7 = certs_only_pkcs7(&[t.ca.issuing_der(), t.ca.root_der()]).unwrap();
        let path = t.tmp.path().join("cacerts.p7");
        std::fs::write(&path, &p7).unwrap();
        let out = openssl_ok(&[
            "pkcs7",
            "-inform",
            "DER",
            "-print_certs",
            "-in",
            path.to_str().unwrap(),
        ]);
        assert_eq!(
            out.matches("-----BEGIN CERTIFICATE-----").count(),
            2,
            "{out}"
        );
        assert!(
            out.contains("subject=CN = Bulwark Root CA, O = Bulwark"),
            "{out}"
        );
        assert!(
            out.contains("subject=CN = Bulwark Issuing CA, O = Bulwark"),
            "{out}"
        );

        let err = certs_only_pkcs7(&[b"not a certificate"]).unwrap_err();
        assert!(matches!(err, CaError::Der(_)), "{err:?}");
    }
}

//! Minimal PEM (RFC 7468) encoding and decoding.
//!
//! Only what the CA needs: certificates and CSRs in, certificates out.
//! Decoding is lenient about whitespace and line length, strict about
//! matching `BEGIN`/`END` labels and base64 content.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::CaError;

/// Encodes `der` as one PEM block with `label`, 64-character lines, LF line ends.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// One decoded PEM block.
pub(crate) struct Block {
    pub(crate) label: String,
    pub(crate) der: Vec<u8>,
}

/// Decodes every PEM block in `text`, in order. Text outside blocks is ignored.
pub(crate) fn decode_all(text: &str) -> Result<Vec<Block>, CaError> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let (label, after) = after
            .split_once("-----")
            .ok_or_else(|| pem_err("unterminated begin line"))?;
        let end_marker = format!("-----END {label}-----");
        let end = after
            .find(&end_marker)
            .ok_or_else(|| pem_err(format!("missing end line for {label}")))?;
        let body = &after[..end];
        if body.contains(':') {
            return Err(pem_err("encapsulated headers are not supported"));
        }
        let der = decode_base64_lenient(body)?;
        blocks.push(Block {
            label: label.to_owned(),
            der,
        });
        rest = &after[end + end_marker.len()..];
    }
    Ok(blocks)
}

/// Decodes base64 ignoring all ASCII whitespace.
pub(crate) fn decode_base64_lenient(body: &str) -> Result<Vec<u8>, CaError> {
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(CaError::Base64 {
            detail: "body is empty".into(),
        });
    }
    STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| CaError::Base64 {
            detail: e.to_string(),
        })
}

fn pem_err(detail: impl Into<String>) -> CaError {
    CaError::Base64 {
        detail: format!("pem: {}", detail.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_line_length() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let mut two = pem.clone();
        two.push_str("junk between blocks\n");
        two.push_str(&encode("X509 CRL", &der[..10]));
        let blocks = decode_all(&two).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[0].der, der);
        assert_eq!(blocks[1].label, "X509 CRL");
        assert_eq!(blocks[1].der, &der[..10]);
    }

    #[test]
    fn refuses_broken_blocks() {
        assert!(decode_all("-----BEGIN CERTIFICATE-----\nAAAA\n").is_err());
        assert!(
            decode_all("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").is_err()
        );
        assert!(decode_all("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").is_err());
    }
}

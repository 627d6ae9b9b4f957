//! Webhook signatures, for Bulwark (signing) and for receivers (verifying).
//!
//! Every webhook request carries
//!
//! - `X-Bulwark-Timestamp: <unix seconds>`, the time of this attempt;
//! - `X-Bulwark-Signature: sha256=<hex>`, the lower-case hex HMAC-SHA256,
//!   keyed with the shared secret, of `<timestamp>.<body>` (the decimal
//!   timestamp exactly as sent in the header, one `.`, then the raw body
//!   bytes);
//! - `X-Bulwark-Delivery: <uuid>`, the same for every attempt at the same
//!   notice (receivers de-duplicate on it);
//! - `X-Bulwark-Event: <kind>` (`alert.opened`, `action.applied`, …).
//!
//! A receiver recomputes the HMAC over the raw body before parsing it,
//! compares in constant time, and rejects a timestamp further than a few
//! minutes from its clock (a replay); with the delivery id it can also
//! reject a replay inside that window. Retries are signed afresh, so a
//! delivery that waited in back-off is not rejected as stale.
//! [`verify`] does all of that but the de-duplication.

use aws_lc_rs::hmac;

/// The signature header's value: `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex::encode(ctx.sign().as_ref()))
}

/// Why [`verify`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the timestamp header is not a unix time")]
    BadTimestamp,
    #[error("the timestamp is outside the accepted window")]
    Stale,
    #[error("the signature header is not sha256=<hex>")]
    BadHeader,
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks a request as a receiver should: the timestamp within
/// `tolerance_secs` of `now_unix`, and the signature (compared in constant
/// time) over exactly the timestamp header's text and the raw body.
pub fn verify(
    secret: &[u8],
    timestamp_header: &str,
    body: &[u8],
    signature_header: &str,
    now_unix: i64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp_header
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    if now_unix.abs_diff(ts) > tolerance_secs {
        return Err(VerifyError::Stale);
    }
    let tag = signature_header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(VerifyError::BadHeader)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut msg = Vec::with_capacity(timestamp_header.len() + 1 + body.len());
    msg.extend_from_slice(timestamp_header.as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    hmac::verify(&key, &msg, &tag).map_err(|_| VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_vector_2() {
        // RFC 4231 test case 2 (key "Jefe"): the primitive is HMAC-SHA256.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(tag.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sign_then_verify() {
        let body = br#"{"kind":"alert.opened"}"#;
        let sig = sign(b"0123456789abcdef", 1_767_323_045, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        let ok = |secret: &[u8], ts: &str, body: &[u8], sig: &str, now: i64| {
            verify(secret, ts, body, sig, now, 300)
        };
        assert_eq!(
            ok(b"0123456789abcdef", "1767323045", body, &sig, 1_767_323_100),
            Ok(())
        );
        assert_eq!(
            ok(b"0123456789abcdeX", "1767323045", body, &sig, 1_767_323_100),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            ok(
                b"0123456789abcdef",
                "1767323045",
                b"{}",
                &sig,
                1_767_323_100
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            ok(b"0123456789abcdef", "1767323046", body, &sig, 1_767_323_100),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            ok(
                b"0123456789abcdef",
                "1767323045",
                body,
                &sig,
                1_767_323_045 + 301
            ),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            ok(b"0123456789abcdef", "x", body, &sig, 0),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            ok(
                b"0123456789abcdef",
                "1767323045",
                body,
                "sha1=00",
                1_767_323_045
            ),
            Err(VerifyError::BadHeader)
        );
    }

    #[test]
    fn signed_text_is_timestamp_dot_body() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let tag = hmac::sign(&key, b"12.{}");
        assert_eq!(
            sign(b"k", 12, b"{}"),
            format!("sha256={}", hex::encode(tag.as_ref()))
        );
    }
}

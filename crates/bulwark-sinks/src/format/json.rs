//! JSON: the compact [`crate::Envelope`] of a notice, the
//! body of webhooks and NATS messages, and one line of a JSON lines file.

use crate::notice::{Envelope, Notice};

/// The compact JSON envelope of `notice` (no trailing newline).
///
/// Fails only when a timestamp cannot be written as RFC 3339 (a year
/// outside 0000–9999).
pub fn json(notice: &Notice) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Envelope::new(notice))
}

/// One JSON lines record: the envelope and `\n`. serde_json escapes every
/// control character inside strings, so the only newline is the last byte.
pub fn json_line(notice: &Notice) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = json(notice)?;
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{action_notice, alert};

    #[test]
    fn one_line_round_trips() {
        let mut a = alert();
        a.title = "multi\nline \"title\"\u{2028}".to_owned();
        let n = Notice::Alert(a.clone());
        let line = json_line(&n).unwrap();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["kind"], "alert.opened");
        assert!(v.get("action").is_none());
        let back: bulwark_types::Alert = serde_json::from_value(v["alert"].clone()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn action_envelope_has_the_action() {
        let n = action_notice();
        let v: serde_json::Value = serde_json::from_slice(&json(&n).unwrap()).unwrap();
        assert_eq!(v["kind"], "action.applied");
        assert_eq!(v["action"]["action"], "revoke");
        assert_eq!(v["alert"]["id"], 42);
    }
}

//! The path-traversal suite for target names: hostile names, each refused
//! with its specific reason, and names that must stay valid.

use super::*;
use crate::error::OtaError;
use NameRejection::*;

#[track_caller]
fn check(input: &str, expect: Result<(), NameRejection>) {
    let got = TargetName::new(input).map(|_| ()).map_err(|e| match e {
        OtaError::InvalidName(r) => r,
        other => panic!("{input:?}: unexpected error {other}"),
    });
    assert_eq!(got, expect, "name {input:?}");
}

#[test]
fn traversal_and_hostile_names_are_refused_with_their_reason() {
    let long = "a".repeat(MAX_TARGET_NAME_LEN + 1);
    let very_long = "a".repeat(64 * 1024);
    let deep = "../".repeat(1000);
    let cases: &[(&str, NameRejection)] = &[
        // Plain traversal.
        ("..", DotDot),
        ("../etc/passwd", DotDot),
        ("../../../../etc/shadow", DotDot),
        ("..\\..\\windows\\system32", DotDot),
        ("a/../../b", DotDot),
        ("firmware..bin", DotDot),
        ("...", DotDot),
        ("a..", DotDot),
        (&deep, TooLong),
        // Separators.
        ("a/b", Slash),
        ("targets/fw.bin", Slash),
        ("fw.bin/", Slash),
        ("a\\b", Backslash),
        ("./fw.bin", Slash),
        // Absolute paths and drives.
        ("/etc/passwd", Absolute),
        ("/", Absolute),
        ("//server/share", Absolute),
        ("\\\\server\\share", Absolute),
        ("\\fw.bin", Absolute),
        ("C:fw.bin", Absolute),
        ("c:\\windows", Absolute),
        // Percent-encoded forms (single, double, overlong UTF-8).
        ("%2e%2e%2fetc%2fpasswd", Percent),
        ("%2E%2E/", Percent),
        ("..%2f..%2fetc", DotDot),
        ("%252e%252e%252f", Percent),
        ("%c0%ae%c0%ae%c0%af", Percent),
        ("%00", Percent),
        ("fw%20.bin", Percent),
        ("%2f", Percent),
        // Unicode look-alikes and invisible characters.
        ("\u{ff0e}\u{ff0e}\u{ff0f}etc", NonAscii),
        ("a\u{2215}b", NonAscii),
        ("a\u{2044}b", NonAscii),
        ("\u{2024}\u{2024}", NonAscii),
        ("fw\u{202e}nib.exe", NonAscii),
        ("fw\u{200b}.bin", NonAscii),
        ("f\u{fe0f}w", NonAscii),
        ("caf\u{e9}.bin", NonAscii),
        // NUL and control characters.
        ("fw.bin\0", Nul),
        ("\0", Nul),
        ("fw\0/../../etc", Nul),
        ("fw\n.bin", ControlChar),
        ("fw\r\n", ControlChar),
        ("fw\t", ControlChar),
        ("\u{1b}[31m", ControlChar),
        ("fw\u{7f}", ControlChar),
        ("fw\u{85}", ControlChar),
        // Other characters outside the allow-list.
        ("fw bin", OtherChar),
        ("fw:bin", OtherChar),
        ("file:fw", OtherChar),
        ("~", OtherChar),
        ("~root", OtherChar),
        ("fw*", OtherChar),
        ("fw?", OtherChar),
        ("fw;rm -rf", OtherChar),
        ("$HOME", OtherChar),
        ("fw\"", OtherChar),
        ("<fw>", OtherChar),
        ("fw|x", OtherChar),
        // Leading dot or dash (hidden files, options).
        (".", LeadingDot),
        (".hidden", LeadingDot),
        (".tmpXYZ", LeadingDot),
        ("-rf", LeadingDash),
        ("--help", LeadingDash),
        // Length.
        ("", Empty),
        (&long, TooLong),
        (&very_long, TooLong),
    ];
    for (input, reason) in cases {
        check(input, Err(*reason));
    }
}

#[test]
fn ordinary_names_are_valid() {
    let longest = "a".repeat(MAX_TARGET_NAME_LEN);
    for ok in [
        "fw.bin",
        "sensor-fw_1.2.3.img",
        "A",
        "0",
        "a.b.c",
        "a-",
        "a.",
        "_x",
        longest.as_str(),
    ] {
        check(ok, Ok(()));
        let name = TargetName::new(ok).unwrap();
        assert_eq!(name.as_str(), ok);
        assert_eq!(name.to_tough().unwrap().resolved(), ok);
    }
}

#[test]
fn bytes_that_are_not_utf8_are_refused() {
    for bytes in [&b"\xff"[..], b"fw\xc0\xae", b"\xed\xa0\x80"] {
        match TargetName::from_bytes(bytes) {
            Err(OtaError::InvalidName(NotUtf8)) => {}
            other => panic!("{bytes:?}: {other:?}"),
        }
    }
    assert!(TargetName::from_bytes(b"fw.bin").is_ok());
}

#[test]
fn deserializing_validates() {
    assert!(serde_json::from_str::<TargetName>("\"fw.bin\"").is_ok());
    assert!(serde_json::from_str::<TargetName>("\"../fw.bin\"").is_err());
    assert!(serde_json::from_str::<TargetName>("\"fw\\u0000\"").is_err());
}

#[test]
fn every_valid_name_stays_inside_its_directory() {
    let dir = std::path::Path::new("/var/lib/bulwark/downloads");
    for ok in ["fw.bin", "a-", "a.", "x_y.z"] {
        let name = TargetName::new(ok).unwrap();
        let path = dir.join(name.as_str());
        assert_eq!(path.parent(), Some(dir));
        assert_eq!(path.file_name().and_then(|f| f.to_str()), Some(ok));
    }
}

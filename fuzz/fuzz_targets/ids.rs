//! Identifiers and serials from paths and bodies: accepted values round-trip
//! and never contain MQTT wildcards, separators or NUL.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(id) = bulwark_types::DeviceId::new(s) {
        assert!(!id.as_str().contains(['+', '#', '/', '\0']));
        assert_eq!(id.as_str(), s);
    }
    if let Ok(serial) = bulwark_types::CertSerial::parse_hex(s) {
        assert_eq!(bulwark_types::CertSerial::parse_hex(&serial.to_hex()).ok(), Some(serial));
    }
});

//! Untrusted DER certificate requests: must never panic, and anything
//! accepted must carry a key the policy allows.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(csr) = bulwark_ca::verify_csr(data) {
        let _ = csr.key_kind();
        assert!(!csr.spki_der().is_empty());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = bulwark_ca::verify_csr_pem(text);
    }
});

//! Untrusted EST request bodies (base64 with whitespace, or PEM).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(der) = bulwark_ca::decode_base64_body(data) {
        let _ = bulwark_ca::verify_csr(&der);
    }
});

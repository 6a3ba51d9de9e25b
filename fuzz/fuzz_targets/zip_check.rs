#![no_main]
//! Any bytes through the whole zip reader and checker: must never panic or hang.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ptconform::check::check_bytes(data);
});

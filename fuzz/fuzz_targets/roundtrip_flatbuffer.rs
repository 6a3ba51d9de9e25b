#![no_main]
//! `ptconform::fuzz_support::roundtrip_flatbuffer` (see there for what it checks).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ptconform::fuzz_support::roundtrip_flatbuffer(data));

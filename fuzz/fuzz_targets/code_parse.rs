#![no_main]
//! `ptconform::fuzz_support::code_parse` (see there for what it checks).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ptconform::fuzz_support::code_parse(data));

#![no_main]
//! `ptconform_gen::fuzz_support::code_parse` (see there for what it checks).

libfuzzer_sys::fuzz_target!(|data: &[u8]| ptconform_gen::fuzz_support::code_parse(data));

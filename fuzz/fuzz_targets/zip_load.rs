#![no_main]
//! `ptconform_gen::fuzz_support::zip_load` (see there for what it checks), with the
//! structure-aware custom mutator of the load targets (`ptconform_fuzz::structure_aware_mutator`).

libfuzzer_sys::fuzz_target!(|data: &[u8]| ptconform_gen::fuzz_support::zip_load(data));

ptconform_fuzz::structure_aware_mutator!();

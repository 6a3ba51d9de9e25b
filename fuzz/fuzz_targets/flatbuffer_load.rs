#![no_main]
//! `ptconform::fuzz_support::flatbuffer_load` (see there for what it checks), with a structure-aware
//! custom mutator: half of the mutations change something inside a record and repack the
//! container (`ptconform::mutate`), the other half are libFuzzer's byte mutations.

use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

fuzz_target!(|data: &[u8]| ptconform::fuzz_support::flatbuffer_load(data));

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    if seed % 2 == 0
        && std::env::var_os("PTCONFORM_NO_CUSTOM_MUTATOR").is_none()
        && let Some(m) = ptconform::fuzz_support::structured_mutation(&data[..size], seed)
        && m.len() <= max_size
    {
        data[..m.len()].copy_from_slice(&m);
        return m.len();
    }
    fuzzer_mutate(data, size, max_size)
});

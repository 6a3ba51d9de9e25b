//! Generators of random modules (wasm-smith style): one generator driven by
//! `arbitrary::Unstructured` and a [`Config`], serving fuzzing and property tests alike.

pub mod method;

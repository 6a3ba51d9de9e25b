//! Generators of random modules (wasm-smith style): one generator driven by
//! `arbitrary::Unstructured` and a [`Config`], serving fuzzing and property tests alike.

pub mod compare;
pub mod config;
pub mod method;
pub mod tree;

pub use config::Config;

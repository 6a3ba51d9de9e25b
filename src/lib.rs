//! ptconform: a reference implementation, conformance checker and fuzzing harness for
//! PyTorch's TorchScript serialization formats.
//!
//! This crate holds the tools and the `ptconform` command line. The formats live in
//! [`ptconform_core`] (re-exported here module by module, so `ptconform::jit` is
//! `ptconform_core::jit`), the generators and fuzz support in [`ptconform_gen`].

pub mod cli;
pub mod conform;
pub mod diff;
pub mod dump;

pub use ptconform_core::{
    Error, FormatError, Result, atomic_file, check, code, convert, display, error, extract,
    flatbuffer, inspect, jit, model, pickle, release, roundtrip, zip_archive,
};
pub use ptconform_gen::{fuzz_support, generator, mutate};

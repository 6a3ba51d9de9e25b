//! ptconform: a reference implementation, conformance checker and fuzzing harness for
//! PyTorch's TorchScript serialization formats.

pub mod atomic_file;
pub mod check;
pub mod cli;
pub mod code;
pub mod conform;
pub mod convert;
pub mod diff;
pub mod dump;
pub mod error;
pub mod flatbuffer;
pub mod fuzz_support;
/// The generators (`src/gen/`; `gen` itself is a reserved word in Rust 2024).
#[path = "gen/mod.rs"]
pub mod generator;
pub mod inspect;
pub mod jit;
pub mod model;
pub mod mutate;
pub mod pickle;
pub mod release;
pub mod roundtrip;

pub mod zip_archive;

pub use error::{Error, FormatError, Result};

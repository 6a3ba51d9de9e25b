//! ptconform-core: PyTorch's TorchScript serialization formats, read and written exactly.
//!
//! The TorchScript zip archive (`torch.jit.save`), the mobile zip
//! (`_save_for_lite_interpreter`) and the mobile flatbuffer
//! (`save_jit_module_to_flatbuffer`) share one format-agnostic [`model`]; the codecs
//! ([`pickle`], [`code`], [`zip_archive`], [`flatbuffer`]) sit on its sides, [`jit`] is the
//! load API and [`check`] the conformance rules. Nothing here knows a command line.

#![warn(missing_docs)]

pub mod atomic_file;
pub mod check;
pub mod code;
pub mod convert;
pub mod display;
pub mod error;
pub mod extract;
pub mod file_map;
pub mod flatbuffer;
pub mod inspect;
pub mod jit;
pub mod model;
mod parallel;
pub mod pickle;
pub mod release;
pub mod roundtrip;
pub mod rule;
pub mod zip_archive;

pub use error::{Error, FormatError, Result};

//! The formats read and written against PyTorch's own files: loads, byte-identical
//! re-saves, flatbuffers, mobile conversion and `inspect` facts over the corpus.
//!
//! One test binary per topic (each module was its own binary before); `cargo test --test formats
//! MODULE::` runs one module.

#[path = "../common/mod.rs"]
mod common;

mod code_reprint;
mod corpus_inspect;
mod flatbuffer_foo;
mod flatbuffer_read;
mod flatbuffer_write;
mod load_api;
mod mobile_convert;
mod roundtrip;
mod zip_rebuild;

//! Against PyTorch at large: real models, the crashes PyTorch has on crafted files, the
//! generated-case campaign and the archives of every release from 2.0.
//!
//! One test binary per topic (each module was its own binary before); `cargo test --test pytorch
//! MODULE::` runs one module.

#[path = "../common/mod.rs"]
mod common;

mod conform;
mod cross_version;
mod models;
mod torch_findings;

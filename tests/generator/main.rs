//! The generators: round-trip properties, coverage of shapes, generated `forward`
//! bodies run by PyTorch, and every fuzz target on its seeds.
//!
//! One test binary per topic (each module was its own binary before); `cargo test --test generator
//! MODULE::` runs one module.

#[path = "../common/mod.rs"]
mod common;

mod fuzz_targets;
mod gen_coverage;
mod gen_method;
mod gen_properties;
mod gen_pytorch;
mod mutate;

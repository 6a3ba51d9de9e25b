//! ptconform-gen: random TorchScript modules ([`generator`]), structure-aware mutation of
//! PyTorch's archives ([`mutate`]) and the library side of the fuzz targets
//! ([`fuzz_support`]), all over [`ptconform_core`].

pub mod fuzz_support;
/// The generators (`gen` itself is a reserved word in Rust 2024).
pub mod generator;
pub mod mutate;

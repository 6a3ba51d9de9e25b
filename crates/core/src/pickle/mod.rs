//! PyTorch's TorchScript pickle dialect (protocol 2 subset, `spec/pickle.md`).
//!
//! Written by hand: no pickle crate accepts `BINPERSID` storages, typed-container globals
//! and PyTorch's memo rules, and reading must never import or execute anything.

pub mod opcodes;
pub mod ops;
pub mod read;
pub mod write;

pub use read::{
    PickleError, PickleErrorKind, ReadOptions, StorageRequest, Unpickled, Unpickler, unpickle,
};
pub use write::{MemoPolicy, PickleBytes, Pickler, pickle_value};

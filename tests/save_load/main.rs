//! Ports of PyTorch's `test/jit/test_save_load.py`: `TestSaveLoad` and
//! `TestSaveLoadFlatbuffer`, each scenario checked against real PyTorch.
//!
//! One test binary per topic (each module was its own binary before); `cargo test --test save_load
//! MODULE::` runs one module.

#[path = "../common/mod.rs"]
mod common;

mod test_save_load;
mod test_save_load_flatbuffer;

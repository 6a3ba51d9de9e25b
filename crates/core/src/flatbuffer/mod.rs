//! The mobile flatbuffer format (`PTMF`, spec/flatbuffer.md): a flatbuffer
//! with root table `Module` and file identifier `PTMF`, written by
//! `torch.jit.save_jit_module_to_flatbuffer` and read by the mobile runtime.
//!
//! * [`generated`]: flatc's Rust code for the schema in `schema/` (committed; regenerate
//!   with `bash scripts/regen-flatbuffers.sh`);
//! * [`support`]: what the generated code cannot do for this schema (struct members of
//!   the union, unknown union tags, 32-byte aligned storage bytes); `schema/README.md`
//!   explains why.

pub mod builder;
pub mod generated;
pub mod object_types;
pub mod read;
pub mod support;
pub mod write;

pub use read::{MobileModule, is_flatbuffer, read_flatbuffer};
pub use write::{NameMode, WriteOptions, write_flatbuffer};

use std::path::Path;

use crate::error::Result;
use crate::zip_archive::ExtraFilesMap;
use crate::zip_archive::write::extra_files_write_order;

/// `module` with `extra_files` as its extra files, in the order PyTorch's
/// `std::unordered_map` iterates them (the order PyTorch writes them in).
fn with_extra_files(module: &MobileModule, extra_files: &ExtraFilesMap) -> MobileModule {
    let names: Vec<&str> = extra_files.keys().map(String::as_str).collect();
    let mut m = module.clone();
    m.extra_files = extra_files_write_order(&names)
        .into_iter()
        .filter_map(|i| extra_files.get_index(i))
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect();
    m
}

/// `module._save_to_buffer_for_lite_interpreter(_use_flatbuffer=True)` /
/// `torch._C._save_jit_module_to_bytes`: the flatbuffer bytes, with `extra_files`.
pub fn save_to_buffer_for_lite_interpreter(
    module: &MobileModule,
    extra_files: &ExtraFilesMap,
    options: &WriteOptions,
) -> Result<Vec<u8>> {
    write_flatbuffer(&with_extra_files(module, extra_files), options)
}

/// `torch.jit.save_jit_module_to_flatbuffer(m, path, _extra_files)`. The file is written
/// beside the target and renamed into place: a failed save leaves nothing half-written.
pub fn save_jit_module_to_flatbuffer(
    module: &MobileModule,
    path: impl AsRef<Path>,
    extra_files: &ExtraFilesMap,
    options: &WriteOptions,
) -> Result<()> {
    let bytes = save_to_buffer_for_lite_interpreter(module, extra_files, options)?;
    crate::atomic_file::write_file(path.as_ref(), &bytes)
}

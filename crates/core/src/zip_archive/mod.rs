//! The TorchScript zip container (`spec/zip-archive.md`).
pub mod bytecode;
pub mod load;
pub mod read;
pub mod save;
pub mod write;

pub use load::{LoadOptions, load_archive};
pub use read::{ExtraFilesMap, Record, ZipArchiveReader};
pub use write::{
    PyTorchZipWriter, archive_name_from_path, extra_files_write_order, std_hash_bytes,
};

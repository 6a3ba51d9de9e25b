//! The TorchScript zip container (`spec/zip-archive.md`).
pub mod bytecode;
pub mod load;
pub mod read;
pub mod save;
pub mod write;

pub use load::{LoadOptions, load_archive};
pub use read::{
    DEFAULT_MAX_RECORD_BYTES, ExtraFilesMap, Record, ZipArchiveReader, max_record_bytes,
    set_max_record_bytes,
};
pub use write::{
    PyTorchZipWriter, archive_name_from_path, extra_files_write_order, std_hash_bytes,
};

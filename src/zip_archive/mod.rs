//! The TorchScript zip container (`spec/zip-archive.md`).
pub mod read;
pub mod save;
pub mod write;

pub use read::{ExtraFilesMap, LoadOptions, Record, ZipArchiveReader, load_archive};

//! The load API, named after PyTorch's `torch.jit.load`.

use std::path::Path;

use bytes::Bytes;

use crate::error::Result;
use crate::model::{Device, ScriptModule};
use crate::zip_archive::{ExtraFilesMap, LoadOptions, ZipArchiveReader, load_archive};

/// Loads a TorchScript zip archive from a file, memory-mapping it so tensor data is
/// not copied. `extra_files` works like PyTorch's `_extra_files`: each requested name gets
/// its record's bytes, or empty bytes when the archive has no such record.
pub fn load(
    path: impl AsRef<Path>,
    map_location: Option<Device>,
    extra_files: Option<&mut ExtraFilesMap>,
) -> Result<ScriptModule> {
    let archive = ZipArchiveReader::open(path)?;
    let mut options = LoadOptions {
        map_location,
        extra_files,
        verify_crc: false,
    };
    Ok(load_archive(&archive, &mut options)?)
}

/// Loads from bytes in memory (`torch.jit.load(io.BytesIO(...))`); storages borrow from
/// the buffer.
pub fn load_from_buffer(
    buffer: impl Into<Bytes>,
    map_location: Option<Device>,
    extra_files: Option<&mut ExtraFilesMap>,
) -> Result<ScriptModule> {
    let archive = ZipArchiveReader::from_bytes(buffer)?;
    let mut options = LoadOptions {
        map_location,
        extra_files,
        verify_crc: false,
    };
    Ok(load_archive(&archive, &mut options)?)
}

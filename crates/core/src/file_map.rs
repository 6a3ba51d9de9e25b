//! Reading a whole file as shared bytes: memory-mapped, so tensor storages read from it
//! borrow from the mapping instead of being copied. Every reader of a path maps it here.

use std::path::Path;

use bytes::Bytes;

use crate::error::{Error, Result};

/// Memory-maps a file read-only (empty files give empty bytes: a zero-length map is an
/// error on Linux).
pub fn map_file(path: impl AsRef<Path>) -> Result<Bytes> {
    let path = path.as_ref();
    let io = |e| Error::io(path.display().to_string(), e);
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the map is read-only. Like every mmap-based reader, we rely on the file not
    // being truncated by another process while it is mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok(Bytes::from_owner(map))
}

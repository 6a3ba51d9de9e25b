//! Converting between the zip archive and the mobile flatbuffer.
//!
//! flatbuffer → zip keeps the module (objects, tensors, code from `jit_sources`, tensor
//! constants, extra files); it is what `torch.jit.load(ptl)` + `torch.jit.save` gives,
//! minus source-range debug info. zip → flatbuffer needs mobile bytecode for every
//! method, which a `torch.jit.save` archive does not hold: producing it means compiling
//! the TorchScript code, which ptconform does not do, so that direction is refused with
//! an error saying so.

use std::path::Path;

use bytes::Bytes;

use crate::error::{Error, FormatError, Result, rules};
use crate::flatbuffer::{NameMode, WriteOptions, read_flatbuffer, write_flatbuffer};
use crate::pickle::MemoPolicy;
use crate::zip_archive::save::{SaveOptions, save_to_writer};
use crate::zip_archive::{ExtraFilesMap, ZipArchiveReader};

/// The two formats (`jit::FileFormat`, detected from the bytes as PyTorch does).
pub use crate::jit::FileFormat as Format;

impl Format {
    pub fn of(data: &[u8]) -> Format {
        crate::jit::file_format(data)
    }

    /// The format a file name suggests (`.ptl`/`.ff` → flatbuffer).
    pub fn from_extension(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "ptl" | "ff" => Some(Format::Flatbuffer),
            "pt" | "pth" | "zip" => Some(Format::Zip),
            _ => None,
        }
    }
}

/// Converts `input` to `to`. `prefix` is the zip archive's top-level directory
/// (`torch.jit.save` uses the file's base name, `archive` for buffers).
pub fn convert(input: Bytes, to: Format, prefix: &str, names: NameMode) -> Result<Vec<u8>> {
    match (Format::of(&input), to) {
        (Format::Flatbuffer, Format::Flatbuffer) => {
            let m = read_flatbuffer(&input, None)?;
            write_flatbuffer(&m, &WriteOptions { names })
        }
        (Format::Flatbuffer, Format::Zip) => {
            let m = read_flatbuffer(&input, None)?;
            let extra: ExtraFilesMap = m.extra_files.iter().cloned().collect();
            let options = SaveOptions {
                policy: MemoPolicy::Loaded,
                serialization_id: None,
                ..Default::default()
            };
            save_to_writer(&m.module, Vec::new(), prefix, &extra, &options)
        }
        (Format::Zip, Format::Zip) => {
            let rt = crate::roundtrip::roundtrip_zip(input)?;
            Ok(rt.rewritten)
        }
        (Format::Zip, Format::Flatbuffer) => {
            let archive = ZipArchiveReader::from_bytes(input)?;
            let why = if archive.record("bytecode.pkl").is_some() {
                "this is a mobile zip archive (bytecode.pkl); reading its bytecode is not supported yet"
            } else {
                "the archive holds TorchScript code but no mobile bytecode; a flatbuffer needs \
                 bytecode for every method, which only compiling the code gives (PyTorch: \
                 torch.jit.load, then torch.jit.save_jit_module_to_flatbuffer)"
            };
            Err(Error::Format(FormatError::new(
                rules::FLATBUFFER,
                "bytecode",
                None,
                format!("cannot convert to a flatbuffer: {why}"),
            )))
        }
    }
}

/// Converts the file `input` into `output` (written atomically).
pub fn convert_file(input: &Path, output: &Path, to: Format, names: NameMode) -> Result<()> {
    let data = std::fs::read(input).map_err(|e| Error::io(input.display().to_string(), e))?;
    let prefix = crate::zip_archive::write::archive_name_from_path(output)
        .unwrap_or_else(|_| "archive".to_string());
    let bytes = convert(Bytes::from(data), to, &prefix, names)?;
    crate::flatbuffer::write_file_atomically(output, &bytes)
}

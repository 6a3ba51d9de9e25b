//! Converting between the zip archive and the mobile flatbuffer.
//!
//! flatbuffer → zip keeps the module (objects, tensors, code from `jit_sources`, tensor
//! constants, extra files); it is what `torch.jit.load(ptl)` + `torch.jit.save` gives,
//! minus source-range debug info. A flatbuffer and a mobile zip both carry bytecode, so
//! they convert into each other directly (the bytecode moves over as it is). A
//! `torch.jit.save` archive holds no bytecode: producing it means compiling the
//! TorchScript code, which ptconform does not do, so zip → flatbuffer or mobile zip is
//! refused with an error saying so.

use std::path::Path;

use bytes::Bytes;

use crate::error::{Error, FormatError, Result, rules};
use crate::flatbuffer::{MobileModule, NameMode, WriteOptions, read_flatbuffer, write_flatbuffer};
use crate::pickle::MemoPolicy;
use crate::release::{Release, WriterProfile};
use crate::zip_archive::bytecode::{MobileZipBytecode, ZIP_BYTECODE_VERSION, read_mobile_bytecode};
use crate::zip_archive::save::{SaveOptions, save_to_writer};
use crate::zip_archive::{ExtraFilesMap, LoadOptions, ZipArchiveReader, load_archive};

/// The two formats (`jit::FileFormat`, detected from the bytes as PyTorch does).
pub use crate::jit::FileFormat as Format;

impl Format {
    /// The format of `data`, detected from its bytes as PyTorch does (`PTMF` at offset 4:
    /// flatbuffer; otherwise zip).
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

/// What `convert` writes: the two formats, and the zip archive with mobile bytecode
/// (`_save_for_lite_interpreter`), which only a source that carries bytecode (a
/// flatbuffer or another mobile zip) can become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A TorchScript zip archive (`torch.jit.save`).
    Zip,
    /// A zip archive with mobile bytecode (`_save_for_lite_interpreter`).
    MobileZip,
    /// A mobile flatbuffer (`save_jit_module_to_flatbuffer`).
    Flatbuffer,
}

impl From<Format> for Target {
    fn from(f: Format) -> Target {
        match f {
            Format::Zip => Target::Zip,
            Format::Flatbuffer => Target::Flatbuffer,
        }
    }
}

fn no_bytecode(to: &str) -> Error {
    Error::Format(FormatError::new(
        rules::CONVERT_NEEDS_BYTECODE,
        "bytecode",
        None,
        format!(
            "cannot convert to a {to}: the archive holds TorchScript code but no mobile \
             bytecode (bytecode.pkl), which only compiling the code gives (PyTorch: \
             torch.jit.load, then torch.jit.save_jit_module_to_flatbuffer or \
             _save_for_lite_interpreter)"
        ),
    ))
}

/// A mobile zip read as a mobile module: the module `torch.jit.load` gives, with the
/// bytecode of `bytecode.pkl`, every function of it a method (as in PyTorch's
/// flatbuffers, where a submodule's `__setstate__` is listed among the methods).
fn mobile_module_of_zip(input: Bytes) -> Result<Option<MobileModule>> {
    let archive = ZipArchiveReader::from_bytes(input)?;
    let Some(bytecode) = read_mobile_bytecode(&archive, true)? else {
        return Ok(None);
    };
    let extra = crate::roundtrip::extra_files_in_insertion_order(&archive)?;
    let module = load_archive(&archive, &mut LoadOptions::default())?;
    // PyTorch's flatbuffer writer lists every function of the mobile compilation unit
    // as a method (a submodule's `__setstate__` too: its objects refer to it by index).
    let mut m = MobileModule::new(module, bytecode.functions.clone());
    m.extra_files = extra.into_iter().collect();
    Ok(Some(m))
}

/// The mobile zip `_save_for_lite_interpreter` writes for `m`: the zip archive of its
/// module with `bytecode.pkl` holding every function of `m` (bytecode version 8, the
/// zip's; tensor constants under `constants/N.storage`).
pub fn mobile_zip_of(m: &MobileModule, prefix: &str) -> Result<Vec<u8>> {
    mobile_zip_as(m, prefix, WriterProfile::default())
}

/// [`mobile_zip_of`] as the release of `profile` writes it.
pub fn mobile_zip_as(m: &MobileModule, prefix: &str, profile: WriterProfile) -> Result<Vec<u8>> {
    let extra: ExtraFilesMap = m.extra_files.iter().cloned().collect();
    let options = SaveOptions {
        policy: MemoPolicy::Loaded,
        serialization_id: None,
        operators: Some(operators_of(m)),
        constants_key_suffix: ".storage",
        bytecode: Some(MobileZipBytecode {
            bytecode_version: ZIP_BYTECODE_VERSION.min(m.bytecode_version.into()),
            functions: m.functions.clone(),
        }),
        profile,
        ..Default::default()
    };
    save_to_writer(&m.module, Vec::new(), prefix, &extra, &options)
}

/// Every operator (`name.overload`) the bytecode of `m` calls (`functions` holds the
/// methods too).
fn operators_of(m: &MobileModule) -> Vec<String> {
    m.functions
        .iter()
        .flat_map(|f| f.operators.iter().map(|o| o.full_name()))
        .collect()
}

/// How `convert` writes: the flatbuffer writer's naming, and the PyTorch release whose
/// writers it reproduces (`None`: the latest; a zip re-saved as a zip keeps its own).
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// How the flatbuffer writer names classes that share a qualified name.
    pub names: NameMode,
    /// The PyTorch release whose writers to reproduce; `None` for the latest (or, zip to
    /// zip, the source's own).
    pub release: Option<Release>,
}

impl From<NameMode> for Options {
    fn from(names: NameMode) -> Options {
        Options {
            names,
            release: None,
        }
    }
}

/// Converts `input` to `to`. `prefix` is the zip archive's top-level directory
/// (`torch.jit.save` uses the file's base name, `archive` for buffers).
pub fn convert(
    input: Bytes,
    to: impl Into<Target>,
    prefix: &str,
    options: impl Into<Options>,
) -> Result<Vec<u8>> {
    let Options { names, release } = options.into();
    let profile = release.unwrap_or(Release::LATEST).profile();
    let fb_options = WriteOptions { names };
    match (Format::of(&input), to.into()) {
        (Format::Flatbuffer, Target::Flatbuffer) => {
            write_flatbuffer(&read_flatbuffer(&input, None)?, &fb_options)
        }
        (Format::Flatbuffer, Target::Zip) => {
            let m = read_flatbuffer(&input, None)?;
            let extra: ExtraFilesMap = m.extra_files.iter().cloned().collect();
            let options = SaveOptions {
                policy: MemoPolicy::Loaded,
                serialization_id: None,
                operators: Some(operators_of(&m)),
                profile,
                ..Default::default()
            };
            save_to_writer(&m.module, Vec::new(), prefix, &extra, &options)
        }
        (Format::Flatbuffer, Target::MobileZip) => {
            mobile_zip_as(&read_flatbuffer(&input, None)?, prefix, profile)
        }
        (Format::Zip, Target::Zip) => {
            let rt = crate::roundtrip::roundtrip_zip_as(input, release)?;
            Ok(rt.rewritten)
        }
        (Format::Zip, Target::MobileZip) => match mobile_module_of_zip(input)? {
            Some(m) => mobile_zip_as(&m, prefix, profile),
            None => Err(no_bytecode("mobile zip")),
        },
        (Format::Zip, Target::Flatbuffer) => match mobile_module_of_zip(input)? {
            Some(m) => write_flatbuffer(&m, &fb_options),
            None => Err(no_bytecode("flatbuffer")),
        },
    }
}

/// Converts the file `input` into `output` (written atomically).
pub fn convert_file(
    input: &Path,
    output: &Path,
    to: impl Into<Target>,
    options: impl Into<Options>,
) -> Result<()> {
    let data = std::fs::read(input).map_err(|e| Error::io(input.display().to_string(), e))?;
    let prefix = crate::zip_archive::write::archive_name_from_path(output)
        .unwrap_or_else(|_| "archive".to_string());
    let bytes = convert(Bytes::from(data), to, &prefix, options)?;
    crate::atomic_file::write_file(output, &bytes)
}

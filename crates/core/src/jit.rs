//! The load API, named after PyTorch's `torch.jit.load` and the `torch._C` helpers for
//! mobile files. The format is detected from the bytes as PyTorch does: `PTMF` at byte
//! offset 4 is a mobile flatbuffer (whatever else the file looks like), anything else is
//! read as a zip archive.

use std::path::Path;

use bytes::Bytes;

use crate::error::{FormatError, Result};
use crate::flatbuffer::generated::mobile_bytecode as fb;
use crate::flatbuffer::{MobileModule, is_flatbuffer, read_flatbuffer};
use crate::model::bytecode::{ModuleInfo, Operator};
use crate::model::{Device, ScriptModule};
use crate::zip_archive::{ExtraFilesMap, LoadOptions, ZipArchiveReader};

/// The serialization format of a file, decided from its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// A TorchScript zip archive (or anything that is not a flatbuffer: the zip reader
    /// reports what is wrong with it).
    Zip,
    /// A mobile flatbuffer (`PTMF` at offset 4).
    Flatbuffer,
}

/// PyTorch's `getFileFormat`: the flatbuffer identifier wins over everything else, so a
/// zip whose bytes 4..8 happen to be `PTMF` is read as a flatbuffer (and fails as one).
pub fn file_format(data: &[u8]) -> FileFormat {
    if is_flatbuffer(data) {
        FileFormat::Flatbuffer
    } else {
        FileFormat::Zip
    }
}

pub use crate::file_map::map_file;

/// Loads a TorchScript file (zip archive or mobile flatbuffer), memory-mapping it so
/// tensor data is not copied. `extra_files` works like PyTorch's `_extra_files`: for a
/// zip, each requested name gets its record's bytes, or empty bytes when the archive has
/// no such record; for a flatbuffer, every requested name is first emptied and then
/// every extra file of the buffer is added (requested or not), as PyTorch 2.15 does.
pub fn load(
    path: impl AsRef<Path>,
    map_location: Option<Device>,
    extra_files: Option<&mut ExtraFilesMap>,
) -> Result<ScriptModule> {
    load_from_buffer(map_file(path)?, map_location, extra_files)
}

/// Loads from bytes in memory (`torch.jit.load(io.BytesIO(...))`); storages borrow from
/// the buffer. Same format detection and `extra_files` semantics as [`load`].
pub fn load_from_buffer(
    buffer: impl Into<Bytes>,
    map_location: Option<Device>,
    extra_files: Option<&mut ExtraFilesMap>,
) -> Result<ScriptModule> {
    let buffer: Bytes = buffer.into();
    match file_format(&buffer) {
        FileFormat::Flatbuffer => {
            let mobile = read_flatbuffer(&buffer, map_location)?;
            if let Some(extra) = extra_files {
                add_flatbuffer_extra_files(&mobile, extra, true);
            }
            Ok(mobile.module)
        }
        FileFormat::Zip => {
            let mut options = LoadOptions {
                map_location,
                extra_files,
                verify_crc: false,
            };
            let (_, module) = crate::zip_archive::load::open_and_load(buffer, &mut options)?;
            Ok(module)
        }
    }
}

/// Copies every extra file of a flatbuffer into `map` in file order (a name that occurs
/// twice ends with its last content, as PyTorch's loader assigns them one by one). With
/// `clear_requested`, names already in `map` are set to empty bytes first
/// (`torch.jit.load`); without, they keep their value (`_get_model_extra_files_from_buffer`).
fn add_flatbuffer_extra_files(mobile: &MobileModule, map: &mut ExtraFilesMap, clear: bool) {
    if clear {
        for value in map.values_mut() {
            *value = Bytes::new();
        }
    }
    for (name, content) in &mobile.extra_files {
        map.insert(name.clone(), content.clone());
    }
}

/// `torch._C._get_model_extra_files_from_buffer(buffer, extra_files)`
/// (flatbuffer.md §5b): the whole mobile module is loaded, then
///
/// * flatbuffer: every extra file is added to `extra_files` (adding or overwriting keys);
///   requested names the buffer lacks keep their value;
/// * zip archive with `bytecode.pkl` (a mobile zip): `extra_files` is left unchanged
///   (PyTorch's mobile zip loader only fills names that were asked for, and it asks for
///   none);
/// * zip archive without `bytecode.pkl` (every `torch.jit.save` archive): an error naming
///   `bytecode.pkl`, as PyTorch raises.
///
/// Unlike PyTorch 2.15, a flatbuffer holding an enum value is read (PyTorch's loaders
/// reject every enum value; `check` reports it as `flatbuffer-enum`). ptconform does not
/// interpret a mobile zip's `bytecode.pkl`; only the container is read.
pub fn get_model_extra_files_from_buffer(
    buffer: &[u8],
    extra_files: &mut ExtraFilesMap,
) -> Result<()> {
    let buffer = Bytes::copy_from_slice(buffer);
    match file_format(&buffer) {
        FileFormat::Flatbuffer => {
            let mobile = read_flatbuffer(&buffer, None)?;
            add_flatbuffer_extra_files(&mobile, extra_files, false);
            Ok(())
        }
        FileFormat::Zip => {
            let archive = ZipArchiveReader::from_bytes(buffer)?;
            if archive.has_record("bytecode.pkl") {
                Ok(())
            } else {
                Err(no_bytecode_error(&archive).into())
            }
        }
    }
}

fn no_bytecode_error(archive: &ZipArchiveReader) -> FormatError {
    archive.missing_record(
        "bytecode.pkl",
        "file not found: bytecode.pkl (a torch.jit.save archive holds no mobile bytecode; \
         only mobile files, flatbuffers or zips saved for the lite interpreter, have it)",
    )
}

/// The module info of a mobile file: a flatbuffer's as [`get_flatbuffer_module_info`]
/// reads it, or a mobile zip's from its `bytecode.pkl` (bytecode version from its first
/// element, as `_get_model_bytecode_version`; operator version = the `version` record;
/// functions, operators and type names as for a flatbuffer). A `torch.jit.save` archive
/// has no bytecode and is refused.
pub fn get_model_info(buffer: &[u8]) -> Result<ModuleInfo> {
    if file_format(buffer) == FileFormat::Flatbuffer {
        return get_flatbuffer_module_info(buffer);
    }
    let archive = ZipArchiveReader::from_bytes(Bytes::copy_from_slice(buffer))?;
    match crate::zip_archive::bytecode::read_mobile_bytecode(&archive, false)? {
        Some(b) => Ok(b.module_info(archive.version()?.0)),
        None => Err(no_bytecode_error(&archive).into()),
    }
}

/// `torch.jit._serialization.get_flatbuffer_module_info` (`torch._C.
/// _get_module_info_from_flatbuffer`): bytecode and operator versions, the qualified names
/// of the functions among the mobile ivalues, `{operator: num_args}` over their operators
/// and the names parsed from their type annotations (flatbuffer.md §4).
///
/// Like PyTorch, only the functions are read, so a file whose objects PyTorch cannot load
/// (enum values, merged classes) still has module info; unlike PyTorch (which crashes on
/// anything but a valid flatbuffer), the whole buffer is verified first and every other
/// input is an error: a zip archive is refused with a message saying whether it has
/// `bytecode.pkl`.
pub fn get_flatbuffer_module_info(buffer: &[u8]) -> Result<ModuleInfo> {
    if file_format(buffer) == FileFormat::Zip {
        return Err(not_a_flatbuffer(buffer).into());
    }
    let fberr =
        |field: String, message: String| crate::flatbuffer::read::field_error(field, message);
    let m = crate::flatbuffer::read::verified_module(buffer)?;
    let ivalues = m
        .ivalues()
        .ok_or_else(|| fberr("Module.ivalues".into(), "missing".into()))?;
    // PyTorch: a mobile_ivalue_size of 0 means "all ivalues".
    let size = match m.mobile_ivalue_size() as usize {
        0 => ivalues.len(),
        n if n > ivalues.len() => {
            return Err(fberr(
                "Module.mobile_ivalue_size".into(),
                format!("{n} is larger than the {} ivalues", ivalues.len()),
            )
            .into());
        }
        n => n,
    };
    let mut info = ModuleInfo {
        bytecode_version: m.bytecode_version(),
        operator_version: m.operator_version(),
        ..Default::default()
    };
    let mut parsed = rustc_hash::FxHashSet::default();
    for i in 0..size {
        let iv = ivalues.get(i);
        if iv.val_type() != fb::IValueUnion::Function {
            continue;
        }
        let here = format!("Module.ivalues[{i}].Function");
        let f = iv
            .val_as_function()
            .ok_or_else(|| fberr(here.clone(), "Function table missing".into()))?;
        let qn = f
            .qn()
            .ok_or_else(|| fberr(format!("{here}.qn"), "missing".into()))?;
        info.function_names.insert(qn.to_string());
        for op in f.operators().into_iter().flatten() {
            let n = op.num_args_serialized();
            let op = Operator {
                name: op.name().unwrap_or("").to_string(),
                overload_name: op.overload_name().unwrap_or("").to_string(),
                num_args: Some(n),
            };
            info.opname_to_num_args.insert(op.full_name(), n);
        }
        for (k, t) in f.type_annotations().into_iter().flatten().enumerate() {
            // Annotation strings are shared: parse each one once (a hostile file could
            // reference one huge annotation from every slot).
            if !parsed.insert((t.as_ptr() as usize, t.len())) {
                continue;
            }
            crate::model::bytecode::collect_type_names(t, &mut info.type_names).map_err(|e| {
                fberr(
                    format!("{here}.type_annotations[{k}]"),
                    format!("{t:?} does not parse: {e}"),
                )
            })?;
        }
    }
    Ok(info)
}

use crate::flatbuffer::read::field_error as fb_error;

/// The extra files of a mobile flatbuffer, `(name, content)` in file order, without
/// loading the module (what `ptconform extra` lists, as it lists a zip's `extra/`
/// records without unpickling). The whole buffer is verified first; contents borrow from
/// `buffer`.
pub fn flatbuffer_extra_files(buffer: &Bytes) -> Result<Vec<(String, Bytes)>, FormatError> {
    if !is_flatbuffer(buffer) {
        return Err(crate::flatbuffer::read::identifier_error(
            "bytes 4..8 are not \"PTMF\": not a mobile flatbuffer",
        ));
    }
    let m = crate::flatbuffer::read::verified_module(buffer)?;
    let mut out = Vec::new();
    for (i, f) in m.extra_files().into_iter().flatten().enumerate() {
        let name = f
            .name()
            .ok_or_else(|| fb_error(format!("Module.extra_files[{i}].name"), "missing"))?;
        let content = match f.content() {
            None => Bytes::new(),
            Some(c) => {
                let bytes = c.bytes();
                let start = bytes.as_ptr() as usize - buffer.as_ptr() as usize;
                let end = start + bytes.len();
                // A flatbuffer string: PyTorch's verifier requires the terminating NUL.
                if buffer.get(end) != Some(&0) {
                    return Err(fb_error(
                        format!("Module.extra_files[{i}].content"),
                        format!("string at offset {start} is not NUL-terminated"),
                    ));
                }
                buffer.slice(start..end)
            }
        };
        out.push((name.to_string(), content));
    }
    Ok(out)
}

/// The error for a file that is not a flatbuffer where only a flatbuffer will do.
fn not_a_flatbuffer(buffer: &[u8]) -> FormatError {
    let bytes = Bytes::copy_from_slice(buffer);
    match ZipArchiveReader::from_bytes(bytes) {
        Ok(a) if a.has_record("bytecode.pkl") => crate::flatbuffer::read::identifier_error(
            "a mobile zip archive (it has bytecode.pkl), not a flatbuffer: \
             get_flatbuffer_module_info reads only flatbuffers (PTMF at offset 4)",
        ),
        Ok(_) => crate::flatbuffer::read::identifier_error(
            "a TorchScript zip archive without bytecode.pkl (as torch.jit.save writes), \
             not a flatbuffer: get_flatbuffer_module_info reads only flatbuffers (PTMF at \
             offset 4)",
        ),
        Err(_) => crate::flatbuffer::read::identifier_error(
            "bytes 4..8 are not \"PTMF\": not a mobile flatbuffer (and not a readable zip \
             archive)",
        ),
    }
}

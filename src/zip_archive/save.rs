//! `torch.jit.save`: the record set and order of spec/zip-archive.md §2.1, written through
//! the byte-exact container writer.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::ExtraFilesMap;
use super::write::{PyTorchZipWriter, archive_name_from_path, extra_files_write_order};
use crate::error::{Error, Result};
use crate::model::{IValue, QualifiedName, ScriptModule, Storage, Tuple};
use crate::pickle::{MemoPolicy, PickleBytes, Pickler};

/// How to save beyond the module itself.
#[derive(Clone, Debug)]
pub struct SaveOptions {
    /// Which heap values get memoized (see [`MemoPolicy`]).
    pub policy: MemoPolicy,
    /// Write this `.data/serialization_id` instead of computing PyTorch's (keeps a
    /// loaded archive's id on round trip).
    pub serialization_id: Option<String>,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions {
            policy: MemoPolicy::Loaded,
            serialization_id: None,
        }
    }
}

/// The format version PyTorch writes for this code: 3, raised by operators whose
/// semantics changed (spec/zip-archive.md §2.2).
pub fn required_version(code: &[&str]) -> u64 {
    const BUMPS: &[(&str, u64)] = &[
        ("torch.div(", 4),
        ("torch.div_(", 4),
        ("torch.full(", 5),
        ("torch.linspace(", 8),
        ("torch.logspace(", 9),
        ("torch.gelu(", 10),
        ("torch.gelu_(", 10),
    ];
    let mut v = 3;
    for text in code {
        for (needle, version) in BUMPS {
            if *version > v && contains_call(text, needle) {
                v = *version;
            }
        }
    }
    v
}

/// `needle` occurring as a call, not as the tail of a longer name (`xtorch.div(`).
fn contains_call(text: &str, needle: &str) -> bool {
    text.match_indices(needle).any(|(i, _)| {
        i == 0
            || !text.as_bytes()[i - 1].is_ascii_alphanumeric()
                && text.as_bytes()[i - 1] != b'_'
                && text.as_bytes()[i - 1] != b'.'
    })
}

fn write_pickle<W: Write>(
    zw: &mut PyTorchZipWriter<W>,
    name: &str,
    p: &PickleBytes,
) -> std::io::Result<()> {
    if p.chunks.len() == 1 {
        zw.write_record(name, &p.chunks[0])
    } else {
        zw.write_record_from_reader(name, p.len(), &mut p.reader())
    }
}

fn write_storages<W: Write>(
    zw: &mut PyTorchZipWriter<W>,
    dir: &str,
    storages: &[Arc<Storage>],
) -> std::io::Result<()> {
    for (i, s) in storages.iter().enumerate() {
        // Meta storages have no bytes: PyTorch writes an empty record.
        let data: &[u8] = if s.device.is_meta() { &[] } else { &s.data };
        zw.write_record(&format!("{dir}/{i}"), data)?;
    }
    Ok(())
}

/// Saves `module` as a TorchScript zip archive with the given prefix.
pub fn save_to_writer<W: Write>(
    module: &ScriptModule,
    writer: W,
    prefix: &str,
    extra_files: &ExtraFilesMap,
    options: &SaveOptions,
) -> Result<W> {
    let io = |e| Error::io("<archive writer>", e);
    let mut zw = PyTorchZipWriter::new(writer, prefix);
    let names: Vec<&str> = extra_files.keys().map(String::as_str).collect();
    for i in extra_files_write_order(&names) {
        let (name, data) = extra_files.get_index(i).expect("index from order");
        zw.write_record(&format!("extra/{name}"), data)
            .map_err(io)?;
    }
    let cu = module.cu.clone();
    let is_module = move |q: &QualifiedName| cu.is_module_class(q);
    let ident = |q: &QualifiedName| q.clone();
    let root = IValue::Object(module.root.clone());
    let mut p = Pickler::new(&is_module, &ident);
    p.plan(&root, options.policy.clone());
    let (data_pkl, storages) = p.finish(&root);
    write_storages(&mut zw, "data", &storages).map_err(io)?;
    write_pickle(&mut zw, "data.pkl", &data_pkl).map_err(io)?;
    let mut texts = Vec::new();
    for f in &module.cu.files {
        let path = crate::model::types::qualifier_to_code_path(&f.qualifier);
        zw.write_record(&path, f.text.as_bytes()).map_err(io)?;
        if let Some(d) = &f.debug_pkl {
            zw.write_record(&format!("{path}.debug_pkl"), d)
                .map_err(io)?;
        }
        texts.push(f.text.as_str());
    }
    let constants = IValue::Tuple(Arc::new(Tuple {
        items: module.constants.clone(),
        named: None,
    }));
    let mut p = Pickler::new(&is_module, &ident);
    // The constants tuple is built afresh at save time; its contents keep the policy.
    p.plan(&constants, options.policy.clone());
    p.unmemoize(&constants);
    let (constants_pkl, cstorages) = p.finish(&constants);
    write_storages(&mut zw, "constants", &cstorages).map_err(io)?;
    write_pickle(&mut zw, "constants.pkl", &constants_pkl).map_err(io)?;
    let version = required_version(&texts);
    let version_name = if version >= 6 {
        ".data/version"
    } else {
        "version"
    };
    zw.write_record(version_name, format!("{version}\n").as_bytes())
        .map_err(io)?;
    zw.write_record("byteorder", b"little").map_err(io)?;
    match &options.serialization_id {
        Some(id) => zw.finish_with_serialization_id(id),
        None => zw.finish(),
    }
    .map_err(io)
}

/// `torch.jit.save(m, path)`: the prefix is the file's base name without its extension.
/// The archive is written to a temporary file beside the target and renamed into place,
/// so a failed save leaves no half-written file behind.
pub fn save(
    module: &ScriptModule,
    path: impl AsRef<Path>,
    extra_files: &ExtraFilesMap,
    options: &SaveOptions,
) -> Result<()> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let prefix = archive_name_from_path(path).map_err(|e| {
        Error::io(
            shown.clone(),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
        )
    })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(shown.clone(), e))?;
    let file = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
    let file = save_to_writer(module, file, &prefix, extra_files, options)?;
    file.into_inner()
        .map_err(|e| Error::io(shown.clone(), e.into_error()))?
        .sync_all()
        .map_err(|e| Error::io(shown.clone(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io(shown.clone(), e.error))?;
    Ok(())
}

/// `save_to_buffer`: the prefix is `archive`, as for any stream.
pub fn save_to_buffer(
    module: &ScriptModule,
    extra_files: &ExtraFilesMap,
    options: &SaveOptions,
) -> Result<Bytes> {
    let out = save_to_writer(module, Vec::new(), "archive", extra_files, options)?;
    Ok(Bytes::from(out))
}

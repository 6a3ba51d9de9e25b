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
use crate::release::WriterProfile;
use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};

use crate::code::print_source;
use crate::model::compose::{Renames, qualified_tokens, rename_definition};
use crate::model::mangle::{NameUniquer, original_name};
use crate::model::{CompilationUnit, Definition};
use crate::pickle::{MemoPolicy, PickleBytes, Pickler};

/// How to save beyond the module itself.
#[derive(Clone, Debug)]
pub struct SaveOptions {
    /// Which heap values get memoized (see [`MemoPolicy`]).
    pub policy: MemoPolicy,
    /// Write this `.data/serialization_id` instead of computing PyTorch's (keeps a
    /// loaded archive's id on round trip).
    pub serialization_id: Option<String>,
    /// `fsync` the file before renaming it into place, so the archive also survives a
    /// power loss (torch.jit.save does not; off by default: it doubles the time of a
    /// large save on a typical disk). Without it a save is still all-or-nothing for
    /// readers: the archive appears under its name only once complete.
    pub sync: bool,
    /// Write this `version` instead of the one computed from the code. A re-save keeps
    /// the archive's own: PyTorch computed it from operator schemas (`torch.div` of two
    /// ints is `aten::div.int`, which has no upgrader and keeps version 3), which the
    /// printed code alone does not always show.
    pub version: Option<u64>,
    /// Suffix of tensor-constant storage names: `""` (`constants/0`, key `"0"`) as
    /// `torch.jit.save` writes them, `".storage"` (`constants/0.storage`, key
    /// `"0.storage"`) as `_save_for_lite_interpreter` does.
    pub constants_key_suffix: &'static str,
    /// Records written after `constants.pkl` and before `version`, byte for byte:
    /// what PyTorch writes beside the module and `torch.jit.load` never reads
    /// (`bytecode.pkl` and the mobile debug records of a mobile zip, `traced_inputs/N`
    /// and `traced_inputs.pkl` of a traced module). A re-save keeps them as read.
    /// Each is (name, bytes, deflated).
    pub trailing_records: Vec<(String, Bytes, bool)>,
    /// Mobile bytecode to write as `bytecode.pkl` after `constants.pkl` (a mobile zip,
    /// as `_save_for_lite_interpreter` writes it); its tensor constants share the
    /// `constants/N.storage` records of `constants.pkl`.
    pub bytecode: Option<super::bytecode::MobileZipBytecode>,
    /// The operators (`aten::div.int`) the module's compiled code calls, when known
    /// (from the bytecode of a flatbuffer or mobile zip): they tell which `torch.div`
    /// overload the printed code means, which decides its `version`.
    pub operators: Option<Vec<String>>,
    /// The records the reproduced PyTorch release writes (default: 2.15's).
    pub profile: WriterProfile,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions {
            policy: MemoPolicy::Loaded,
            serialization_id: None,
            sync: false,
            version: None,
            constants_key_suffix: "",
            trailing_records: Vec::new(),
            bytecode: None,
            operators: None,
            profile: WriterProfile::default(),
        }
    }
}

/// The format version PyTorch writes for this code: 3, raised by operators whose
/// semantics changed (spec/zip-archive.md §2.2). PyTorch decides by the operator
/// overloads its compiler chose; from the text alone `torch.div(` always counts, though
/// only the `Tensor`, `Scalar` and `out` overloads have upgraders (`aten::div.int` keeps
/// 3). With `operators` (the compiled code's, from bytecode) a `torch.div` call counts
/// only when one of those overloads is among them.
pub fn required_version(code: &[&str], operators: Option<&[String]>) -> u64 {
    let div_upgraded = operators.is_none_or(|ops| {
        ops.iter().any(|o| {
            matches!(
                o.as_str(),
                "aten::div.Tensor"
                    | "aten::div.Scalar"
                    | "aten::div.out"
                    | "aten::div_.Tensor"
                    | "aten::div_.Scalar"
            )
        })
    });
    // The calls that bump the version, after their common "torch.".
    const BUMPS: &[(&str, u64)] = &[
        ("div(", 4),
        ("div_(", 4),
        ("full(", 5),
        ("linspace(", 8),
        ("logspace(", 9),
        ("gelu(", 10),
        ("gelu_(", 10),
    ];
    let mut v = 3;
    // One scan for "torch." per text (a search per call name was a few percent of a
    // small save).
    for text in code {
        for (i, _) in text.match_indices("torch.") {
            let before = i.checked_sub(1).map(|j| text.as_bytes()[j]);
            // A call, not the tail of a longer name (`xtorch.div(`).
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
                continue;
            }
            let rest = &text[i + "torch.".len()..];
            for (call, version) in BUMPS {
                let counts = div_upgraded || !call.starts_with("div");
                if *version > v && counts && rest.starts_with(call) {
                    v = *version;
                }
            }
        }
    }
    v
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
    suffix: &str,
    first: usize,
    storages: &[Arc<Storage>],
) -> std::io::Result<()> {
    for (i, s) in storages.iter().enumerate() {
        // Meta storages have no bytes: PyTorch writes an empty record.
        let data: &[u8] = if s.device.is_meta() { &[] } else { &s.data };
        zw.write_record(&format!("{dir}/{}{suffix}", first + i), data)?;
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
    write_archive(
        module,
        writer,
        prefix,
        extra_files,
        options,
        "<archive writer>",
    )
}

/// [`save_to_writer`] with write failures reported against `shown` (the output's path).
fn write_archive<W: Write>(
    module: &ScriptModule,
    writer: W,
    prefix: &str,
    extra_files: &ExtraFilesMap,
    options: &SaveOptions,
    shown: &str,
) -> Result<W> {
    let io = |e| Error::io(shown, e);
    let mut zw = PyTorchZipWriter::new(writer, prefix);
    let names: Vec<&str> = extra_files.keys().map(String::as_str).collect();
    for i in extra_files_write_order(&names) {
        let (name, data) = extra_files.get_index(i).expect("index from order");
        zw.write_record(&format!("extra/{name}"), data)
            .map_err(io)?;
    }
    let cu = module.cu.clone();
    let is_module = move |q: &QualifiedName| cu.is_module_class(q);
    // Types are asked for their archive names in PyTorch's order: first while pickling
    // (root first, depth first, slot order), then while printing code.
    let uniquer = RefCell::new(NameUniquer::new());
    let asked = RefCell::new(Vec::<QualifiedName>::new());
    let name_map = |q: &QualifiedName| {
        asked.borrow_mut().push(q.clone());
        archive_name(&module.cu, &uniquer, q)
    };
    let root = IValue::Object(module.root.clone());
    let mut p = Pickler::new(&is_module, &name_map);
    p.plan(&root, options.policy.clone());
    let (data_pkl, storages) = p.finish(&root);
    write_storages(&mut zw, "data", "", 0, &storages).map_err(io)?;
    write_pickle(&mut zw, "data.pkl", &data_pkl).map_err(io)?;
    let files = if is_verbatim(module) {
        module
            .cu
            .files
            .iter()
            .map(|f| (f.qualifier.clone(), f.text.clone(), f.debug_pkl.clone()))
            .collect()
    } else {
        let pickled: Vec<QualifiedName> = asked.borrow().clone();
        print_code(&module.cu, &uniquer, pickled)
    };
    let mut texts = Vec::new();
    for (qualifier, text, debug_pkl) in &files {
        let path = crate::model::types::qualifier_to_code_path(qualifier);
        zw.write_record(&path, text.as_bytes()).map_err(io)?;
        let debug = debug_pkl
            .clone()
            .unwrap_or_else(|| minimal_debug_pkl(text.is_empty()));
        zw.write_record(&format!("{path}.debug_pkl"), &debug)
            .map_err(io)?;
        texts.push(text.as_str());
    }
    let constants = IValue::Tuple(Arc::new(Tuple {
        items: module.constants.clone(),
        named: None,
    }));
    let mut p = Pickler::new(&is_module, &name_map).with_key_suffix(options.constants_key_suffix);
    // The constants tuple is built afresh at save time; its contents keep the policy.
    p.plan(&constants, options.policy.clone());
    p.unmemoize(&constants);
    let (constants_pkl, cstorages) = p.finish(&constants);
    write_storages(
        &mut zw,
        "constants",
        options.constants_key_suffix,
        0,
        &cstorages,
    )
    .map_err(io)?;
    write_pickle(&mut zw, "constants.pkl", &constants_pkl).map_err(io)?;
    if let Some(bytecode) = &options.bytecode {
        let value = super::bytecode::bytecode_value(bytecode.bytecode_version, &bytecode.functions);
        let mut p = Pickler::new(&is_module, &name_map)
            .with_key_suffix(options.constants_key_suffix)
            .with_storage_context(&cstorages);
        // Every tensor is memoized (the mobile code holds a second reference); the
        // tuples are built afresh.
        p.plan(&value, MemoPolicy::Scripted);
        p.unmemoize(&value);
        let (pkl, new_storages) = p.finish(&value);
        write_storages(
            &mut zw,
            "constants",
            options.constants_key_suffix,
            cstorages.len(),
            &new_storages,
        )
        .map_err(io)?;
        write_pickle(&mut zw, "bytecode.pkl", &pkl).map_err(io)?;
    }
    for (name, data, deflated) in &options.trailing_records {
        zw.write_record_as(name, data, *deflated).map_err(io)?;
    }
    let version = options
        .version
        .unwrap_or_else(|| required_version(&texts, options.operators.as_deref()));
    let version_name = if version >= 6 {
        ".data/version"
    } else {
        "version"
    };
    zw.write_record(version_name, format!("{version}\n").as_bytes())
        .map_err(io)?;
    if options.profile.byteorder_record {
        zw.write_record("byteorder", b"little").map_err(io)?;
    }
    let id = match &options.serialization_id {
        _ if !options.profile.serialization_id_record => None,
        Some(id) => Some(id.clone()),
        None => Some(zw.computed_serialization_id()),
    };
    zw.finish_with_serialization_id(id.as_deref()).map_err(io)
}

/// `torch.jit.save(m, path)`: the prefix is the file's base name without its extension.
/// The archive is written to a temporary file beside the target and renamed into place,
/// so a failed save leaves no half-written file behind (see [`SaveOptions::sync`]).
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
    let tmp = crate::atomic_file::temp_beside(path).map_err(|e| Error::io(shown.clone(), e))?;
    let file = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
    let file = write_archive(module, file, &prefix, extra_files, options, &shown)?;
    let file = file
        .into_inner()
        .map_err(|e| Error::io(shown.clone(), e.into_error()))?;
    if options.sync {
        file.sync_all().map_err(|e| Error::io(shown.clone(), e))?;
    }
    crate::atomic_file::replace(tmp, path).map_err(|e| Error::io(shown.clone(), e))?;
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

/// A module read from an archive and not combined with others is re-saved with its files
/// exactly as read (PyTorch's re-save reproduces them too).
pub(crate) fn is_verbatim(module: &ScriptModule) -> bool {
    let cu = &module.cu;
    !cu.files.is_empty()
        && cu.definitions().all(|d| {
            !d.name()
                .as_str()
                .contains(crate::model::mangle::KEY_SEPARATOR)
                && cu.files.iter().any(|f| f.definitions.contains(d.name()))
        })
}

/// The archive name of a type key: uniqued for classes, interfaces, NamedTuples and
/// enums; free functions keep their names (PyTorch does not unique them at save time).
pub(crate) fn archive_name(
    cu: &CompilationUnit,
    uniquer: &RefCell<NameUniquer>,
    key: &QualifiedName,
) -> QualifiedName {
    match cu.get(key) {
        Some(Definition::Function(_)) => original_name(key),
        _ => uniquer.borrow_mut().unique(key),
    }
}

/// Names a definition refers to, in the order PyTorch's printer meets them (its own name,
/// attribute and constant types, then each method's signature and body).
fn references_in_order(cu: &CompilationUnit, d: &Definition) -> Vec<QualifiedName> {
    // Printing goes attribute by attribute, then method by method (signature, body).
    let mut out = vec![d.name().clone()];
    out.extend(d.field_types());
    if let Definition::Interface(i) = d {
        i.methods.iter().for_each(|(_, s)| s.named_types(&mut out));
    }
    for m in d.methods() {
        m.signature.named_types(&mut out);
        for token in qualified_tokens(&m.body) {
            let atoms: Vec<&str> = token.split('.').collect();
            if let Some(n) = (2..=atoms.len())
                .rev()
                .map(|k| QualifiedName::new(atoms[..k].join(".")))
                .find(|n| cu.get(n).is_some())
            {
                out.push(n);
            }
        }
    }
    out.retain(|n| cu.get(n).is_some() || crate::model::torchbind::is_torchbind_name(n));
    out
}

/// Prints the code of every type the archive needs: first the classes met while
/// pickling, then what their code refers to, breadth first; one file per (uniqued)
/// qualifier, files in the order first needed.
pub(crate) fn print_code(
    cu: &CompilationUnit,
    uniquer: &RefCell<NameUniquer>,
    pickled: Vec<QualifiedName>,
) -> Vec<(String, String, Option<Bytes>)> {
    let mut queue: VecDeque<QualifiedName> = pickled
        .into_iter()
        .filter(|n| cu.get(n).is_some() || crate::model::torchbind::is_torchbind_name(n))
        .collect();
    let mut printed = HashSet::new();
    let mut files: Vec<(String, Vec<Definition>)> = Vec::new();
    while let Some(key) = queue.pop_front() {
        if !printed.insert(key.clone()) {
            continue;
        }
        if crate::model::torchbind::is_torchbind_name(&key) && cu.get(&key).is_none() {
            // Defined in C++: PyTorch still opens the namespace's (empty) code file.
            let qualifier = key.qualifier().to_string();
            if !files.iter().any(|(q, _)| *q == qualifier) {
                files.push((qualifier, Vec::new()));
            }
            continue;
        }
        let Some(def) = cu.get(&key) else { continue };
        let refs = references_in_order(cu, def);
        let mut renames = Renames::new();
        for r in &refs {
            renames.insert(r.clone(), archive_name(cu, uniquer, r));
            queue.push_back(r.clone());
        }
        let out_name = archive_name(cu, uniquer, &key);
        let printed_def = rename_definition(def, &renames);
        let qualifier = out_name.qualifier().to_string();
        match files.iter_mut().find(|(q, _)| *q == qualifier) {
            Some((_, defs)) => defs.push(printed_def),
            None => files.push((qualifier, vec![printed_def])),
        }
    }
    files
        .into_iter()
        .map(|(q, defs)| {
            let refs: Vec<&Definition> = defs.iter().collect();
            (q, print_source(&refs), None)
        })
        .collect()
}

/// A `.debug_pkl` in PyTorch's structure for code that has no recorded source ranges:
/// the string table holds only `""` and one record maps the whole file to an empty range.
/// An empty file (a TorchBind namespace) has no records at all, as PyTorch writes it.
fn minimal_debug_pkl(empty_file: bool) -> Bytes {
    use crate::model::{List, Str, TypeExpr};
    let t = |items: Vec<IValue>| IValue::Tuple(Arc::new(Tuple { items, named: None }));
    let source = t(vec![
        IValue::List(Arc::new(List {
            elem_type: TypeExpr::name("int"),
            items: Vec::new(),
        })),
        IValue::Int(0),
        IValue::Int(0),
    ]);
    let record = t(vec![
        IValue::Int(0),
        t(vec![source, IValue::Int(0), IValue::Int(0)]),
        IValue::Int(0),
    ]);
    let records = if empty_file { vec![] } else { vec![record] };
    let v = t(vec![
        IValue::String(Str::from("FORMAT_WITH_STRING_TABLE")),
        t(vec![IValue::String(Str::from(""))]),
        t(records),
    ]);
    let none = |_: &QualifiedName| false;
    let ident = |q: &QualifiedName| q.clone();
    let mut p = Pickler::new(&none, &ident);
    if empty_file {
        // PyTorch memoizes both inner tuples, the empty one included.
        let inner: rustc_hash::FxHashSet<usize> =
            v.children().iter().filter_map(|c| c.identity()).collect();
        p.plan(&v, MemoPolicy::Recorded(Arc::new(inner)));
    } else {
        p.plan(&v, MemoPolicy::Loaded);
        // The table is a fresh value in PyTorch, so not memoized.
        p.unmemoize(&v);
    }
    Bytes::from(p.finish(&v).0.to_vec())
}

#[cfg(test)]
mod tests {
    use super::required_version;

    #[test]
    fn required_version_counts_calls_not_longer_names() {
        assert_eq!(required_version(&["x = torch.add(a, b)"], None), 3);
        assert_eq!(required_version(&["return torch.div(a, b)"], None), 4);
        assert_eq!(required_version(&["torch.full([2], 1.)"], None), 5);
        // The highest bump of all texts wins, wherever it is.
        let texts = [
            "torch.linspace(0, 1, 3)",
            "y = torch.gelu_(x)",
            "torch.div(a, b)",
        ];
        assert_eq!(required_version(&texts, None), 10);
        assert_eq!(required_version(&["(torch.logspace(0, 1))"], None), 9);
        // Tails of other names and non-calls do not count.
        assert_eq!(required_version(&["xtorch.div(a, b)"], None), 3);
        assert_eq!(required_version(&["a.torch.full(b)"], None), 3);
        assert_eq!(required_version(&["_torch.gelu(x)"], None), 3);
        assert_eq!(
            required_version(&["torch.divide(a, b) torch.gelu"], None),
            3
        );
        // With the compiled operators known, `torch.div` counts only for an upgraded
        // overload.
        let int_only = ["aten::div.int".to_string()];
        assert_eq!(required_version(&["torch.div(a, b)"], Some(&int_only)), 3);
        let tensor = ["aten::div.Tensor".to_string()];
        assert_eq!(required_version(&["torch.div(a, b)"], Some(&tensor)), 4);
        assert_eq!(
            required_version(&["torch.full([1], 0)"], Some(&int_only)),
            5
        );
    }
}

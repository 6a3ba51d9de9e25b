//! Loading a TorchScript zip archive, as `torch.jit.load` does: `data.pkl` unpickled with
//! its storages sliced from `data/N`, and the classes it names imported from `code/`
//! (only the ones reachable from the values, as PyTorch's importer resolves them lazily).
//! The container itself is [`super::read`]; the write side mirrors this in
//! [`super::write`] (container) and [`super::save`] (`torch.jit.save`).

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use bytes::Bytes;
use indexmap::IndexMap;

use crate::code;
use crate::error::{FormatError, Result};
use crate::model::compilation_unit::unknown_type;
use crate::model::torchbind;
use crate::model::{
    CompilationUnit, Definition, Device, IValue, QualifiedName, ScriptModule, SourceFile, Storage,
    types::qualifier_to_code_path,
};
use crate::pickle::{self, StorageRequest};

use super::read::{
    CrateDirectory, ExtraFilesMap, PARALLEL_VALIDATION_RECORDS, Record, ZipArchiveReader,
};

/// What to do while loading, like `torch.jit.load`'s arguments.
#[derive(Default)]
pub struct LoadOptions<'a> {
    /// Where to put non-meta storages (`map_location`); meta stays meta.
    pub map_location: Option<Device>,
    /// Requested extra files: each value is replaced by the record's bytes, or by empty
    /// bytes when the archive has no such record (as PyTorch 2.15 does; not an error).
    pub extra_files: Option<&'a mut ExtraFilesMap>,
    /// Verify record CRCs (PyTorch does not; `check` does).
    pub verify_crc: bool,
}

/// Unpickles `name` (e.g. `data.pkl`) with storages from `<storage_dir>/<key>`.
pub fn read_pickle(
    archive: &ZipArchiveReader,
    name: &str,
    storage_dir: &str,
    options: &LoadOptions,
) -> Result<pickle::Unpickled, FormatError> {
    let data = archive.read(name, options.verify_crc)?;
    // Storages already made, by record (most: no per-storage key string is kept) and, for
    // those read without a record (meta, empty), by key. A key seen before gets the same
    // storage whichever way it was made.
    let mut by_record: Vec<Option<Arc<Storage>>> = vec![None; archive.records().len()];
    let mut by_key: HashMap<String, Arc<Storage>> = HashMap::default();
    // Record names are built in one reused buffer.
    let mut rec_name = String::new();
    let mut next_record: Option<usize> = None;
    let mut resolve = |req: &StorageRequest| -> std::result::Result<Arc<Storage>, String> {
        let reuse = |s: &Arc<Storage>| {
            if s.dtype != req.dtype {
                return Err(format!(
                    "reused with dtype {} after {}",
                    req.dtype.name(),
                    s.dtype.name()
                ));
            }
            Ok(s.clone())
        };
        if let Some(s) = by_key.get(req.key) {
            return reuse(s);
        }
        rec_name.clear();
        rec_name.push_str(storage_dir);
        rec_name.push('/');
        rec_name.push_str(req.key);
        // Storages usually come in record order (PyTorch writes `data/0`, `data/1`, ...
        // as the pickle names them): the record after the last one found is tried before
        // the name table (the same record whenever no two records share a name).
        let guess = next_record
            .filter(|_| !archive.repeated_name)
            .filter(|&i| archive.records.get(i).and_then(Record::name) == Some(&rec_name));
        let index = guess.or_else(|| archive.record_index(&rec_name));
        next_record = index.map(|i| i + 1);
        if let Some(s) = index.and_then(|i| by_record[i].as_ref()) {
            return reuse(s);
        }
        let nbytes = req
            .numel
            .checked_mul(req.dtype.element_size())
            .ok_or_else(|| format!("numel {} overflows", req.numel))?;
        let device = match (options.map_location, req.location.is_meta()) {
            (Some(d), false) => d,
            _ => req.location,
        };
        // Meta storages have no bytes; empty storages are not looked up (as in PyTorch).
        if req.location.is_meta() || req.numel == 0 {
            let s = Arc::new(Storage {
                dtype: req.dtype,
                device,
                numel: req.numel,
                data: Bytes::new(),
            });
            by_key.insert(req.key.to_string(), s.clone());
            return Ok(s);
        }
        let index = index.ok_or_else(|| format!("record {rec_name:?} is missing"))?;
        let rec = &archive.records()[index];
        if rec.size < nbytes {
            return Err(format!(
                "record {rec_name:?} has {} bytes but {} elements of {} need {nbytes}",
                rec.size,
                req.numel,
                req.dtype.name()
            ));
        }
        let mut data = archive
            .read_record(rec, options.verify_crc)
            .map_err(|e| e.to_string())?;
        data.truncate(nbytes as usize);
        let s = Arc::new(Storage {
            dtype: req.dtype,
            device,
            numel: req.numel,
            data,
        });
        by_record[index] = Some(s.clone());
        Ok(s)
    };
    pickle::unpickle(&data, &mut resolve).map_err(|e| e.in_record(name))
}

/// Loads the module like `torch.jit.load`.
pub fn load_archive(
    archive: &ZipArchiveReader,
    options: &mut LoadOptions,
) -> Result<ScriptModule, FormatError> {
    load_archive_with(archive, options, None)
}

/// Opens the archive in `buffer` and loads it like `torch.jit.load`, returning both (the
/// reader for what else is read from the file, such as `inspect`'s extra files). The
/// reader's validation runs alongside the load: for a large directory the `zip` crate
/// starts parsing it (the larger half of the validation) on the pool while the directory
/// is walked here, and it is checked on a second thread while the pickles are read. Its
/// verdict still comes first, as with [`ZipArchiveReader::from_bytes`].
pub fn open_and_load(
    buffer: Bytes,
    options: &mut LoadOptions,
) -> Result<(ZipArchiveReader, ScriptModule), FormatError> {
    let early = std::sync::OnceLock::new();
    let loaded = crate::parallel::in_place_scope(|scope| {
        if super::read::worth_opening_early(&buffer) {
            scope.spawn(|| {
                early.get_or_init(|| super::read::open_with_crate(&buffer));
            });
        }
        let mut archive = ZipArchiveReader::from_bytes_unvalidated(buffer.clone())?;
        let module = load_archive_with(&archive, options, Some(&early))?;
        archive.validated = true;
        Ok((archive, module))
    });
    // The crate's parse (thousands of small allocations, made on the pool) is freed on
    // the pool too, off the caller's path.
    if let Some(parsed) = early.into_inner() {
        crate::parallel::detach(move || drop(parsed));
    }
    loaded
}

/// `load_archive`, with the `zip` crate's parse of the directory (for validation) made
/// or being made early, on another thread ([`open_and_load`]).
pub(crate) fn load_archive_with(
    archive: &ZipArchiveReader,
    options: &mut LoadOptions,
    early: Option<&std::sync::OnceLock<CrateDirectory>>,
) -> Result<ScriptModule, FormatError> {
    // A reader from `from_bytes_unvalidated` (jit::load) is validated here: for a large
    // directory on a second thread while the pickles are read, else first. Either way its
    // verdict comes before anything else, as if `from_bytes` had been used.
    let parallel_validation =
        !archive.validated && archive.records.len() >= PARALLEL_VALIDATION_RECORDS;
    if !archive.validated && !parallel_validation {
        archive.validate_with(early)?;
    }
    if let Err(e) = archive.version() {
        if parallel_validation {
            archive.validate_with(early)?;
        }
        return Err(e);
    }
    // The code files are read and parsed on a second thread while the pickles are read
    // (the two are independent until the pickles say which classes are needed; a file
    // parsed in vain costs time only, and its errors count only if it is needed).
    let verify_crc = options.verify_crc;
    let parallel_code = code_bytes(archive) >= PARALLEL_CODE_BYTES;
    // On rayon's pool (threads that outlive the load: no thread start per load, and the
    // allocator's per-thread heaps stay alive for the frees when the module is dropped).
    // The code comes first: the crate may still be parsing the directory on another
    // thread (started by `jit::load`). Should validation then fail, the parse is dropped.
    let helper = || {
        let prepared = match parallel_code {
            true => prepare_code(archive, verify_crc),
            false => PreparedCode::default(),
        };
        let valid = match parallel_validation {
            true => archive.validate_with(early),
            false => Ok(()),
        };
        (valid, prepared)
    };
    let options_ref = &*options;
    let read_pickles = || {
        read_pickle(archive, "constants.pkl", "constants", options_ref)
            .and_then(|c| Ok((c, read_pickle(archive, "data.pkl", "data", options_ref)?)))
    };
    let (pickles, (validation, mut prepared)) = if parallel_validation || parallel_code {
        // The pickles are read on the calling thread (their values are usually dropped
        // there too: same-thread frees are the allocator's cheapest).
        let mut helped = None;
        let pickles = crate::parallel::in_place_scope(|scope| {
            scope.spawn(|| helped = Some(helper()));
            read_pickles()
        });
        (pickles, helped.unwrap_or_else(helper))
    } else {
        (read_pickles(), (Ok(()), PreparedCode::default()))
    };
    validation?;
    let (constants_pkl, data_pkl) = pickles?;
    let mut memoized = constants_pkl.memoized;
    memoized.extend(data_pkl.memoized);
    let constants = match constants_pkl.value {
        IValue::Tuple(t) => t.items.clone(),
        other => {
            return Err(pickle::read::unexpected_value(
                "constants.pkl",
                "a tuple of constants",
                &other,
            ));
        }
    };
    let root = match data_pkl.value {
        IValue::Object(o) => o,
        other => {
            return Err(pickle::read::unexpected_value(
                "data.pkl",
                "the root module object",
                &other,
            ));
        }
    };
    let mut needed = Vec::new();
    collect_named_types(&IValue::Object(root.clone()), &mut needed);
    for c in &constants {
        collect_named_types(c, &mut needed);
    }
    let cu = import_code_prepared(archive, needed, options.verify_crc, &mut prepared)?;
    let module = ScriptModule {
        root,
        cu: Arc::new(cu),
        constants,
        extra_files: IndexMap::new(),
        memoized: Some(Arc::new(memoized)),
    };
    crate::model::module::validate_objects(&module)?;
    let mut module = module;
    if let Some(extra) = options.extra_files.as_deref_mut() {
        for (name, value) in extra.iter_mut() {
            // PyTorch 2.15 hands back empty bytes for a requested name the archive lacks
            // (whatever value the caller passed in); it is not an error.
            *value = match archive.record(&format!("extra/{name}")) {
                Some(rec) => archive.read_record(rec, options.verify_crc)?,
                None => Bytes::new(),
            };
            module.extra_files.insert(name.clone(), value.clone());
        }
    }
    Ok(module)
}

/// Class and enum names used by pickled values, visiting each shared value once.
fn collect_named_types(root: &IValue, out: &mut Vec<QualifiedName>) {
    let mut seen = HashSet::default();
    let mut stack = vec![root];
    while let Some(v) = stack.pop() {
        // Tensors (and the tensors of their quantizers) name no types.
        if matches!(v, IValue::Tensor(_)) {
            continue;
        }
        if let Some(id) = v.identity()
            && !seen.insert(id)
        {
            continue;
        }
        match v {
            IValue::Object(o) => out.push(o.class.clone()),
            IValue::Enum(e) => out.push(e.enum_type.clone()),
            _ => {}
        }
        stack.extend(v.children());
    }
}

/// Parses the `code/` files needed to define `needed` and everything their declarations
/// mention, as PyTorch's importer does: a name maps to its file by the qualifier rule, and
/// files nobody needs are kept as text without being parsed.
pub fn import_code(
    archive: &ZipArchiveReader,
    needed: Vec<QualifiedName>,
    verify_crc: bool,
) -> Result<CompilationUnit, FormatError> {
    import_code_prepared(archive, needed, verify_crc, &mut PreparedCode::default())
}

/// Code files at least this big in total are parsed on a second thread during a load.
const PARALLEL_CODE_BYTES: u64 = 32 << 10;

/// Code files read and parsed ahead of need, by record path.
type PreparedCode = HashMap<String, Result<(String, Vec<Definition>), FormatError>>;

fn code_bytes(archive: &ZipArchiveReader) -> u64 {
    archive
        .records()
        .iter()
        .filter(|r| r.name().is_some_and(is_code_path))
        .map(|r| r.size)
        .sum()
}

fn is_code_path(name: &str) -> bool {
    name.starts_with("code/") && name.ends_with(".py")
}

/// Reads and parses every code file (see [`load_archive`]).
fn prepare_code(archive: &ZipArchiveReader, verify_crc: bool) -> PreparedCode {
    let mut out = PreparedCode::default();
    for path in archive.record_names().filter(|n| is_code_path(n)) {
        let qualifier = path["code/".len()..path.len() - ".py".len()].replace('/', ".");
        if qualifier_to_code_path(&qualifier) != path {
            continue;
        }
        out.insert(
            path.to_string(),
            read_code_file(archive, path, &qualifier, verify_crc),
        );
    }
    out
}

/// One code file's text and declarations.
fn read_code_file(
    archive: &ZipArchiveReader,
    path: &str,
    qualifier: &str,
    verify_crc: bool,
) -> Result<(String, Vec<Definition>), FormatError> {
    let text = archive.read(path, verify_crc)?;
    let text = code::source_text(path, &text)?;
    let defs = code::parse_record(path, qualifier, text)?;
    Ok((text.to_string(), defs))
}

fn import_code_prepared(
    archive: &ZipArchiveReader,
    needed: Vec<QualifiedName>,
    verify_crc: bool,
    prepared: &mut PreparedCode,
) -> Result<CompilationUnit, FormatError> {
    let mut cu = CompilationUnit::new();
    let mut parsed: HashSet<String> = HashSet::default();
    // (name, required): names used by pickled values or declarations must exist; names
    // seen only inside method bodies are followed when their file exists (PyTorch
    // resolves those when it compiles the body).
    // TorchBind classes are defined in C++: their (empty) namespace file is kept when the
    // archive has it, and no definition is required.
    let mut queue: VecDeque<(QualifiedName, bool)> = needed
        .into_iter()
        .map(|n| {
            let required = !torchbind::is_torchbind_name(&n);
            (n, required)
        })
        .collect();
    let mut requested = HashSet::default();
    while let Some((name, required)) = queue.pop_front() {
        if !requested.insert(name.clone()) {
            continue;
        }
        let qualifier = name.qualifier().to_string();
        let path = qualifier_to_code_path(&qualifier);
        if !required && !archive.has_record(&path) {
            continue;
        }
        if parsed.insert(qualifier.clone()) {
            let file = match prepared.remove(&path) {
                Some(file) => file,
                None if !archive.has_record(&path) => {
                    return Err(unknown_type(
                        path.clone(),
                        format!("type {name} is used but its code file {path:?} is missing"),
                    ));
                }
                None => read_code_file(archive, &path, &qualifier, verify_crc),
            };
            let (text, defs) = file?;
            let debug_pkl = archive
                .record(&format!("{path}.debug_pkl"))
                .map(|r| archive.read_record(r, verify_crc))
                .transpose()?;
            let mut names = Vec::new();
            for def in defs {
                for dep in dependencies(&def) {
                    let required = !torchbind::is_torchbind_name(&dep);
                    queue.push_back((dep, required));
                }
                for token in body_references(&def) {
                    for dep in candidate_names(&token) {
                        queue.push_back((dep, false));
                    }
                }
                names.push(def.name().clone());
                cu.define_in(def, path.clone())?;
            }
            cu.files.push(SourceFile {
                qualifier: qualifier.clone(),
                text,
                debug_pkl,
                definitions: names,
            });
        }
        if required && cu.get(&name).is_none() {
            return Err(unknown_type(
                path,
                format!("type {name} is used but not defined in its code file"),
            ));
        }
    }
    // Keep the archive's file order: a re-save writes the files in that order.
    cu.files.sort_by_cached_key(|f| {
        archive
            .record_index(&qualifier_to_code_path(&f.qualifier))
            .unwrap_or(usize::MAX)
    });
    Ok(cu)
}

/// Dotted `__torch__...` tokens in method and function bodies (calls, constructors,
/// enum members), outside string literals.
fn body_references(def: &Definition) -> Vec<String> {
    let bodies: Vec<&str> = match def {
        Definition::Class(c) => c.methods.iter().map(|m| m.body.as_str()).collect(),
        Definition::Function(f) => vec![f.def.body.as_str()],
        _ => Vec::new(),
    };
    bodies
        .into_iter()
        .flat_map(crate::model::compose::qualified_tokens)
        .collect()
}

/// `__torch__.a.B.C` may name `__torch__.a.B.C` (a type or function) or a member of
/// `__torch__.a.B` (an enum value): every prefix of at least two atoms, longest first.
fn candidate_names(token: &str) -> Vec<QualifiedName> {
    let atoms: Vec<&str> = token.split('.').collect();
    (2..=atoms.len())
        .rev()
        .map(|k| QualifiedName::new(atoms[..k].join(".")))
        .collect()
}

/// Named types a declaration mentions in attribute types and signatures.
fn dependencies(def: &Definition) -> Vec<QualifiedName> {
    let mut out = def.type_references();
    // TorchBind classes (`__torch__.torch.classes.*`) stay in the list: their namespace
    // file is empty but still part of the archive.
    out.retain(|n| n.as_str().starts_with("__torch__."));
    out
}

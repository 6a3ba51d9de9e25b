//! `check`: conformance rules over an archive. Each violation names a stable rule id
//! (see the README), the record and, where known, the byte offset.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, FormatError, rules};
use crate::flatbuffer::generated::mobile_bytecode as fb;
use crate::flatbuffer::{MobileModule, is_flatbuffer, read_flatbuffer};
use crate::model::{IValue, Tensor};
use crate::pickle;
use crate::release::Release;
use crate::zip_archive::load::read_pickle;
use crate::zip_archive::{LoadOptions, ZipArchiveReader, load_archive};

/// Result of checking one file (zip archive or mobile flatbuffer, detected from the
/// bytes as PyTorch does): violations, or an I/O error that prevented checking.
pub fn check_file(path: &Path) -> Result<Vec<FormatError>, Error> {
    Ok(check_data(crate::jit::map_file(path)?))
}

fn check_data(data: Bytes) -> Vec<FormatError> {
    if is_flatbuffer(&data) {
        return check_flatbuffer(&data);
    }
    match ZipArchiveReader::from_bytes(data) {
        Ok(a) => check_archive(&a),
        Err(e) => vec![e],
    }
}

/// The longest path component the common file systems take (`NAME_MAX` on Linux, and
/// the limit of ext4, XFS, APFS and NTFS): a longer one cannot be extracted anywhere.
pub const NAME_MAX: usize = 255;

/// What breaks the `extra-file-name` rule in a record or extra-file name, if anything.
/// This one function is the rule `check` reports and the rule `extra --out-dir` refuses
/// by (README, "Extra-file names"): a name must be relative, made of `/`-separated
/// components that are neither empty, `.` nor `..`, none longer than [`NAME_MAX`] bytes,
/// with no `\` and no NUL. Everything else (Windows device names such as `CON`, control
/// characters, names differing only in case or Unicode normalization) is a legal Linux
/// file name that PyTorch writes, and passes.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.starts_with('/') {
        return Some("is absolute: it would escape an extraction directory");
    }
    if name.contains('\\') || name.contains('\0') {
        return Some("contains '\\' or NUL: it would escape an extraction directory");
    }
    let mut problem = None;
    for c in name.split('/') {
        problem = problem.or(match c {
            ".." => Some("has a '..' component: it would escape an extraction directory"),
            "." => Some("has a '.' component (extracted, it would name another path)"),
            "" => Some("has an empty path component"),
            c if c.len() > NAME_MAX => Some("has a path component longer than 255 bytes"),
            _ => None,
        });
        if c == ".." {
            return problem;
        }
    }
    problem
}

/// True when a record name breaks the name rule ([`name_problem`]).
pub fn is_unsafe_name(name: &str) -> bool {
    name_problem(name).is_some()
}

/// The `extra-file-name` findings of a set of names that each pass [`name_problem`]: a
/// name that is also another name's directory (`a` and `a/b`), which no file system can
/// hold both of. Returns the index of each such name (the file, not the directory's
/// contents, is the one refused) with the reason.
pub fn name_set_problems<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<(usize, String)> {
    let names: Vec<&str> = names.into_iter().collect();
    let mut dirs: HashSet<&str> = HashSet::new();
    for n in &names {
        for (i, _) in n.match_indices('/') {
            dirs.insert(&n[..i]);
        }
    }
    names
        .iter()
        .enumerate()
        .filter(|(_, n)| dirs.contains(*n))
        .map(|(i, n)| {
            (
                i,
                format!("{n:?} is both a file and the directory of another name ({n}/...)"),
            )
        })
        .collect()
}

/// Archives whose records hold this many bytes or more are read (and their CRCs
/// computed) a record per task on the pool; smaller ones, such as the fuzz targets', on
/// this thread.
const PARALLEL_READ_BYTES: u64 = 16 << 20;

/// Each record read with its CRC checked, in record order: the error, if any.
fn read_every_record(archive: &ZipArchiveReader) -> Vec<Option<FormatError>> {
    let records = archive.records();
    let read = |rec: &crate::zip_archive::Record| archive.read_record(rec, true).err();
    let total = records
        .iter()
        .fold(0u64, |sum, r| sum.saturating_add(r.compressed_size));
    if total >= PARALLEL_READ_BYTES {
        crate::parallel::map_each(records, read)
    } else {
        records.iter().map(read).collect()
    }
}

/// Every violation in an opened zip archive: container and record-name rules first (a
/// damaged container stops there), then the version text, the load, and the code files the
/// load did not need.
pub fn check_archive(archive: &ZipArchiveReader) -> Vec<FormatError> {
    check_and_load_archive(archive).0
}

/// [`check_archive`], also giving the module its load built (when the load succeeded),
/// so a caller that needs both parses and loads the archive once (the fuzz targets).
pub fn check_and_load_archive(
    archive: &ZipArchiveReader,
) -> (Vec<FormatError>, Option<crate::model::ScriptModule>) {
    // Overlapping records and local names the directory contradicts: PyTorch loads such
    // files, so the load below goes on after them.
    let mut out = archive.layout_findings();
    let layout = out.len();
    let reads = read_every_record(archive);
    for (rec, read) in archive.records().iter().zip(reads) {
        match rec.name() {
            None => out.push(FormatError::new(
                rules::ZIP_PREFIX,
                rec.full_name.clone(),
                Some(rec.header_offset),
                format!(
                    "entry is outside the archive folder {:?} (PyTorch ignores it)",
                    archive.prefix()
                ),
            )),
            Some(n) => {
                let why = if rec.name_is_utf8() {
                    name_problem(n)
                } else {
                    Some("is not UTF-8 (PyTorch writes names from Python strings)")
                };
                if let Some(why) = why {
                    out.push(FormatError::new(
                        rules::EXTRA_NAME,
                        rec.full_name.clone(),
                        Some(rec.header_offset),
                        format!("record name {why}"),
                    ));
                }
            }
        }
        out.extend(read);
    }
    let extra: Vec<&crate::zip_archive::Record> = archive
        .records()
        .iter()
        .filter(|r| r.name().is_some_and(|n| n.starts_with("extra/")))
        .collect();
    for (i, why) in name_set_problems(extra.iter().filter_map(|r| r.name())) {
        out.push(FormatError::new(
            rules::EXTRA_NAME,
            extra[i].full_name.clone(),
            Some(extra[i].header_offset),
            format!("record name {why}"),
        ));
    }
    if out.len() > layout {
        // The container itself is damaged; loading would only repeat these errors.
        return (out, None);
    }
    match archive.version() {
        Err(e) => {
            out.push(e);
            return (out, None);
        }
        Ok((v, name)) => {
            // PyTorch reads "3junk" or " +3" as 3, but writes only "3\n" (or "3").
            let text = archive.read(name, false).unwrap_or_default();
            if text.as_ref() != format!("{v}\n").as_bytes()
                && text.as_ref() != v.to_string().as_bytes()
            {
                out.push(FormatError::new(
                    rules::VERSION_TEXT,
                    name,
                    Some(0),
                    format!(
                        "version written as {:?}: PyTorch reads it as {v} but writes \"{v}\\n\"",
                        String::from_utf8_lossy(&text[..text.len().min(40)])
                    ),
                ));
            }
        }
    }
    // Every record's CRC passed above (the check stops at the first that does not), so
    // the load does not hash the bytes again: that was two thirds of checking (a).
    let mut options = LoadOptions::default();
    let module = match load_archive(archive, &mut options) {
        Ok(m) => m,
        Err(e) => {
            out.push(e);
            return (out, None);
        }
    };
    // Code files the load did not need are still part of the format.
    let all_code: Vec<String> = archive
        .record_names()
        .filter(|n| n.starts_with("code/") && n.ends_with(".py"))
        .map(str::to_string)
        .collect();
    for path in all_code {
        if module
            .cu
            .files
            .iter()
            .any(|f| crate::model::types::qualifier_to_code_path(&f.qualifier) == path)
        {
            continue;
        }
        let qualifier = path["code/".len()..path.len() - 3].replace('/', ".");
        match archive.read(&path, false) {
            Ok(text) => {
                let parsed = crate::code::source_text(&path, &text)
                    .and_then(|t| crate::code::parse_record(path.clone(), &qualifier, t));
                if let Err(e) = parsed {
                    out.push(e);
                }
            }
            Err(e) => out.push(e),
        }
    }
    for path in archive
        .record_names()
        .filter(|n| n.starts_with("code/") && n.ends_with(".py"))
        .map(str::to_string)
        .collect::<Vec<_>>()
    {
        if let Ok(text) = archive.read(&path, false) {
            check_code_nesting(&text, &path, &mut out);
        }
    }
    for (name, dir) in [("data.pkl", "data"), ("constants.pkl", "constants")] {
        if let Ok(pickle::Unpickled { end, .. }) = read_pickle(archive, name, dir, &options) {
            let len = archive.record(name).map_or(0, |r| r.size as usize);
            if end < len {
                out.push(pickle::read::trailing_data(name, end, len));
            }
        }
    }
    // A mobile zip's bytecode is read by the lite interpreter (`torch.jit.load` ignores
    // it): it must unpickle safely, its tensors naming the constants' storages.
    // `traced_inputs.pkl` is read by no loader (PyTorch even writes empty storages for
    // it), so it is kept on re-save but not judged.
    if let Err(e) = crate::zip_archive::bytecode::read_mobile_bytecode(archive, true) {
        out.push(e);
    }
    crate::model::module::attribute_findings(&module, &mut out);
    out.extend(crate::model::module::object_path_finding(&module));
    (out, Some(module))
}

/// Checks a mobile flatbuffer: every reader error (rule and field), then what PyTorch
/// 2.15's flatbuffer loaders need that the reader accepts:
///
/// * `flatbuffer-enum`: an `EnumValue` ivalue anywhere (every PyTorch flatbuffer loader
///   fails on it: "Enum with type: ... not found");
/// * `flatbuffer-missing-field`: an offset field PyTorch's writer always writes and its
///   loader follows unchecked, absent;
/// * `flatbuffer-object-types`: signs of classes PyTorch's writer merged because they
///   share a qualified name (it does not apply `___torch_mangle_N` to `object_types`):
///   an `ObjectType` whose attribute names differ from the class of that name in
///   `jit_sources`; an attribute declared (in `jit_sources`) as one class holding an
///   object of another class; objects of one class holding values of different kinds
///   in one slot where the declared type does not allow both;
/// * `attribute-type`: any other attribute value that does not match its declared type.
pub fn check_flatbuffer(buf: &Bytes) -> Vec<FormatError> {
    check_and_read_flatbuffer(buf).0
}

/// [`check_flatbuffer`], also giving the module its read built (when the read
/// succeeded), so a caller that needs both reads the buffer once (the fuzz targets).
pub fn check_and_read_flatbuffer(buf: &Bytes) -> (Vec<FormatError>, Option<MobileModule>) {
    let mut out = Vec::new();
    let mobile = match read_flatbuffer(buf, None) {
        Ok(m) => Some(m),
        Err(e) => {
            out.push(e);
            None
        }
    };
    if mobile.is_some()
        && let Some(e) = crate::flatbuffer::read::pytorch_verifier_finding(buf)
    {
        out.push(e);
    }
    // Both read the verified buffer, so they also run when the reader stopped earlier;
    // verified once for both.
    if let Ok(m) = crate::flatbuffer::read::verified_module(buf) {
        check_enum_values(&m, &mut out);
        check_required_fields(&m, &mut out);
    }
    if let Some(m) = &mobile {
        check_flatbuffer_extra_names(&m.extra_files, &mut out);
        for (k, (q, text)) in m.jit_sources.iter().enumerate() {
            let at = format!("Module.jit_sources[{k}] ({q})");
            check_code_nesting(text.as_bytes(), &at, &mut out);
            check_gelu_approximate(text, &at, &mut out);
        }
    }
    if let Some(m) = &mobile {
        crate::flatbuffer::object_types::declared_attribute_findings(m, &mut out);
        crate::flatbuffer::object_types::object_findings(&m.module, &mut out);
    }
    (out, mobile)
}

/// `extra-file-name` for a flatbuffer's extra files: the zip rule (the name becomes
/// `extra/NAME` when `convert` writes a zip, and a path under `extra --out-dir`), and no
/// name twice (PyTorch's extra-files map keeps one of them; the zip side refuses a
/// repeated entry as `zip-structure`).
fn check_flatbuffer_extra_names(files: &[(String, Bytes)], out: &mut Vec<FormatError>) {
    let mut seen = HashSet::new();
    for (i, (name, _)) in files.iter().enumerate() {
        let at = format!("Module.extra_files[{i}].name");
        // A NUL alone escapes nothing, and PyTorch writes and loads such names
        // (corpus/quirks/extra_files_nul_name.ptl): only the escaping shapes count here.
        let problem = if let Some(why) = name_problem(&name.replace('\0', "_")) {
            Some(format!("extra file name {why}"))
        } else if !seen.insert(name.as_str()) {
            Some(format!(
                "a second extra file named {name:?} (PyTorch keeps only one)"
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            out.push(FormatError::new(rules::EXTRA_NAME, at, None, message));
        }
    }
    for (i, why) in name_set_problems(files.iter().map(|(n, _)| n.as_str())) {
        let at = format!("Module.extra_files[{i}].name");
        out.push(FormatError::new(
            rules::EXTRA_NAME,
            at,
            None,
            format!("extra file name {why}"),
        ));
    }
}

/// `flatbuffer-upgrader`: `torch.gelu(..., approximate=...)` in `jit_sources`.
/// `torch.jit.load` of a flatbuffer compiles its `jit_sources` with the operator
/// upgraders of old versions applied, and gelu's (for files before version 10) has no
/// `approximate`: the load fails with "Arguments for call are not valid" (the lite
/// interpreter, which runs the bytecode, loads the file). Measured on timm's ConvNeXt and
/// a two-line module.
fn check_gelu_approximate(text: &str, at: &str, out: &mut Vec<FormatError>) {
    for (i, _) in text.match_indices("torch.gelu(") {
        let args = &text[i + "torch.gelu(".len()..];
        let mut depth = 1usize;
        let mut end = args.len();
        for (j, c) in args.char_indices() {
            match c {
                '(' | '[' => depth += 1,
                ')' | ']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        if args[..end].contains("approximate=") {
            let line = text[..i].matches('\n').count() + 1;
            out.push(FormatError::new(
                rules::FLATBUFFER_UPGRADER,
                at,
                None,
                format!(
                    "line {line}: torch.gelu(..., approximate=...): torch.jit.load compiles jit_sources with gelu's pre-version-10 upgrader, which has no approximate argument, and fails (\"Arguments for call are not valid\"); the lite interpreter loads the file"
                ),
            ));
            return;
        }
    }
}

/// Deepest expression nesting in TorchScript code that PyTorch's loader is known to
/// survive comfortably. Its parser and the passes after it recurse over the expression
/// tree: 5,000 nested brackets in a method body crash `torch.jit.load` with SIGSEGV
/// (corpus/torch-crashes), and so does a 12,000-term `x + x + ...` chain, a left-deep
/// tree with no brackets at all (8,000 terms load). ptconform keeps bodies as text and
/// would otherwise accept such files.
pub const MAX_CODE_NESTING: usize = 1000;

/// `code-nesting`: an expression whose tree is deeper than [`MAX_CODE_NESTING`],
/// measured on the text as PyTorch's recursive parser builds it: each open bracket is a
/// level, and so is each binary operator of a chain inside one bracket group (`a + b + c`
/// is two levels; a comma or the end of a statement starts a new chain). Operators
/// are counted per run of operator characters and per `and`/`or`/`not`/`is`/`in` word,
/// outside string literals. A unary minus or an `=` is counted too: an over-count of a
/// few levels per statement, far below the limit.
fn check_code_nesting(text: &[u8], record: &str, out: &mut Vec<FormatError>) {
    // `chains[d]`: operators so far in the innermost chain at bracket depth `d`;
    // `levels` is the tree depth there: brackets plus every enclosing chain.
    let mut chains: Vec<usize> = vec![0];
    let mut levels = 0usize;
    let (mut max, mut at) = (0usize, 0usize);
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    let mut in_operator = false;
    let mut word_start: Option<usize> = None;
    let mut i = 0;
    while i <= text.len() {
        let c = text.get(i).copied().unwrap_or(b'\n');
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        let is_word = c.is_ascii_alphanumeric() || c == b'_';
        if is_word {
            word_start.get_or_insert(i);
        } else if let Some(start) = word_start.take()
            && matches!(&text[start..i], b"and" | b"or" | b"not" | b"is" | b"in")
        {
            *chains.last_mut().expect("a chain per depth") += 1;
            levels += 1;
        }
        let operator = b"+-*/%@&|^<>=!~".contains(&c);
        if operator && !in_operator {
            *chains.last_mut().expect("a chain per depth") += 1;
            levels += 1;
        }
        in_operator = operator;
        match c {
            b'\'' | b'"' => quote = Some(c),
            b'(' | b'[' | b'{' => {
                chains.push(0);
                levels += 1;
            }
            b')' | b']' | b'}' if chains.len() > 1 => {
                levels -= 1 + chains.pop().expect("more than one chain");
            }
            b',' => levels -= std::mem::take(chains.last_mut().expect("a chain per depth")),
            // A statement ends at a newline outside brackets.
            b'\n' | b';' if chains.len() == 1 => levels -= std::mem::take(&mut chains[0]),
            _ => {}
        }
        if levels > max {
            (max, at) = (levels, i.min(text.len().saturating_sub(1)));
        }
        i += 1;
    }
    if max > MAX_CODE_NESTING {
        out.push(FormatError::new(
            rules::CODE_NESTING,
            record.to_string(),
            Some(at as u64),
            format!(
                "expression nested {max} deep (brackets and operator chains; more than {MAX_CODE_NESTING}): PyTorch's recursive parser crashes on deep code (5,000 brackets, or a 12,000-term chain)"
            ),
        ));
    }
}

/// `flatbuffer-missing-field`: an offset field (vector, string or table) left out of a
/// table. The flatbuffer default of an absent offset field is "absent", which ptconform's
/// reader takes as empty, but PyTorch's writer always writes these fields and its loader
/// follows them without checking: an absent `TensorMetadata.sizes`, for one, crashes
/// `torch.jit.load` with SIGSEGV (corpus/torch-crashes). Found on the verified buffer, so
/// also when the reader stopped earlier; bounded by the verifier's table limit.
fn check_required_fields(m: &fb::Module, out: &mut Vec<FormatError>) {
    // The record's name is built only for a finding: a file has few, and tens of
    // thousands of tables.
    let mut missing =
        |table: &flatbuffers::Table, record: &dyn Fn() -> String, fields: &[(u16, &str)]| {
            for &(vo, name) in fields {
                if table.vtable().get(vo) == 0 {
                    out.push(FormatError::new(
                        rules::FLATBUFFER_MISSING,
                        format!("{}.{name}", record()),
                        Some(table.loc() as u64),
                        "absent: PyTorch's flatbuffer writer always writes this field and its \
                     loader reads it without checking (torch.jit.load crashes)"
                            .to_string(),
                    ));
                }
            }
        };
    use fb::Module as M;
    missing(
        &m._tab,
        &|| "Module".into(),
        &[
            (M::VT_IVALUES, "ivalues"),
            (M::VT_OBJECT_TYPES, "object_types"),
            (M::VT_EXTRA_FILES, "extra_files"),
            (M::VT_JIT_SOURCES, "jit_sources"),
            (M::VT_JIT_CONSTANTS, "jit_constants"),
        ],
    );
    // PyTorch loads a file without `methods`, and without `storage_data` when it declares
    // no storages (measured: examples/field_drops.rs over the corpus).
    if m.storage_data_size() > 0 {
        missing(
            &m._tab,
            &|| "Module".into(),
            &[(M::VT_STORAGE_DATA, "storage_data")],
        );
    }
    for (i, t) in m.object_types().into_iter().flatten().enumerate() {
        let mut fields = vec![(fb::ObjectType::VT_TYPE_NAME, "type_name")];
        if t.type_() == fb::TypeType::CLASS_WITH_FIELD {
            fields.push((fb::ObjectType::VT_ATTR_NAMES, "attr_names"));
        }
        missing(&t._tab, &|| format!("Module.object_types[{i}]"), &fields);
    }
    for (i, e) in m.extra_files().into_iter().flatten().enumerate() {
        let fields = [
            (fb::ExtraFile::VT_NAME, "name"),
            (fb::ExtraFile::VT_CONTENT, "content"),
        ];
        missing(&e._tab, &|| format!("Module.extra_files[{i}]"), &fields);
    }
    for (i, d) in m.storage_data().into_iter().flatten().enumerate() {
        missing(
            &d._tab,
            &|| format!("Module.storage_data[{i}]"),
            &[(fb::StorageData::VT_DATA, "data")],
        );
    }
    let types = m.object_types();
    for (i, iv) in m.ivalues().into_iter().flatten().enumerate() {
        let at = || format!("Module.ivalues[{i}]");
        use fb::IValueUnion as U;
        if iv.val_type() != U::NONE {
            missing(&iv._tab, &at, &[(fb::IValue::VT_VAL, "val")]);
        }
        if let Some(x) = iv.val_as_string() {
            missing(
                &x._tab,
                &|| format!("{}.String", at()),
                &[(fb::String::VT_DATA, "data")],
            );
        } else if let Some(x) = iv.val_as_device() {
            missing(
                &x._tab,
                &|| format!("{}.Device", at()),
                &[(fb::Device::VT_STR, "str")],
            );
        } else if let Some(x) = iv.val_as_int_list() {
            missing(
                &x._tab,
                &|| format!("{}.IntList", at()),
                &[(fb::IntList::VT_ITEMS, "items")],
            );
        } else if let Some(x) = iv.val_as_double_list() {
            missing(
                &x._tab,
                &|| format!("{}.DoubleList", at()),
                &[(fb::DoubleList::VT_ITEMS, "items")],
            );
        } else if let Some(x) = iv.val_as_bool_list() {
            missing(
                &x._tab,
                &|| format!("{}.BoolList", at()),
                &[(fb::BoolList::VT_ITEMS, "items")],
            );
        } else if let Some(x) = iv.val_as_list() {
            let fields = [
                (fb::List::VT_ITEMS, "items"),
                (fb::List::VT_ANNOTATION_STR, "annotation_str"),
            ];
            missing(&x._tab, &|| format!("{}.List", at()), &fields);
        } else if let Some(x) = iv.val_as_tuple() {
            missing(
                &x._tab,
                &|| format!("{}.Tuple", at()),
                &[(fb::Tuple::VT_ITEMS, "items")],
            );
        } else if let Some(x) = iv.val_as_dict() {
            let fields = [
                (fb::Dict::VT_KEYS, "keys"),
                (fb::Dict::VT_VALUES, "values"),
                (fb::Dict::VT_ANNOTATION_STR, "annotation_str"),
            ];
            missing(&x._tab, &|| format!("{}.Dict", at()), &fields);
        } else if let Some(x) = iv.val_as_object() {
            let with_fields = types
                .filter(|t| (x.type_index() as usize) < t.len())
                .is_some_and(|t| {
                    t.get(x.type_index() as usize).type_() == fb::TypeType::CLASS_WITH_FIELD
                });
            if with_fields {
                missing(
                    &x._tab,
                    &|| format!("{}.Object", at()),
                    &[(fb::Object::VT_ATTRS, "attrs")],
                );
            }
        } else if let Some(x) = iv.val_as_enum_value() {
            missing(
                &x._tab,
                &|| format!("{}.EnumValue", at()),
                &[(fb::EnumValue::VT_TYPE_NAME, "type_name")],
            );
        } else if let Some(x) = iv.val_as_tensor_metadata() {
            let fields = [
                (fb::TensorMetadata::VT_SIZES, "sizes"),
                (fb::TensorMetadata::VT_STRIDES, "strides"),
            ];
            missing(&x._tab, &|| format!("{}.TensorMetadata", at()), &fields);
            if let Some(q) = x.quantized_schema()
                && q.qscheme() != 0
            {
                // Per-channel schemes (every qscheme but per-tensor affine, 0) carry their
                // scales and zero points as tensors.
                let fields = [
                    (fb::QuantizedSchema::VT_SCALES, "scales"),
                    (fb::QuantizedSchema::VT_ZERO_POINTS, "zero_points"),
                ];
                missing(
                    &q._tab,
                    &|| format!("{}.TensorMetadata.quantized_schema", at()),
                    &fields,
                );
            }
        } else if let Some(f) = iv.val_as_function() {
            use fb::Function as F;
            let fields = [
                (F::VT_QN, "qn"),
                (F::VT_INSTRUCTIONS, "instructions"),
                (F::VT_OPERATORS, "operators"),
                (F::VT_CONSTANTS, "constants"),
                (F::VT_TYPE_ANNOTATIONS, "type_annotations"),
            ];
            missing(&f._tab, &|| format!("{}.Function", at()), &fields);
            for (k, op) in f.operators().into_iter().flatten().enumerate() {
                let fields = [
                    (fb::Operator::VT_NAME, "name"),
                    (fb::Operator::VT_OVERLOAD_NAME, "overload_name"),
                ];
                missing(
                    &op._tab,
                    &|| format!("{}.Function.operators[{k}]", at()),
                    &fields,
                );
            }
            if let Some(s) = f.schema() {
                let fields = [
                    (fb::Schema::VT_ARGUMENTS, "arguments"),
                    (fb::Schema::VT_RETURNS, "returns"),
                ];
                missing(&s._tab, &|| format!("{}.Function.schema", at()), &fields);
                for (list, args) in [("arguments", s.arguments()), ("returns", s.returns())] {
                    for (k, a) in args.into_iter().flatten().enumerate() {
                        let fields = [(fb::Arg::VT_NAME, "name"), (fb::Arg::VT_TYPE_, "type")];
                        missing(
                            &a._tab,
                            &|| format!("{}.Function.schema.{list}[{k}]", at()),
                            &fields,
                        );
                    }
                }
            }
        }
    }
}

/// One `flatbuffer-enum` violation per `EnumValue` ivalue (found on the verified buffer,
/// so also when the reader stopped earlier).
fn check_enum_values(m: &fb::Module, out: &mut Vec<FormatError>) {
    for (i, iv) in m.ivalues().into_iter().flatten().enumerate() {
        if iv.val_type() != fb::IValueUnion::EnumValue {
            continue;
        }
        let name = iv
            .val_as_enum_value()
            .and_then(|e| e.type_name())
            .unwrap_or("?");
        out.push(FormatError::new(
            rules::FLATBUFFER_ENUM,
            format!("Module.ivalues[{i}]"),
            None,
            format!(
                "an enum value of {name}: PyTorch 2.15's flatbuffer loaders (torch.jit.load, \
                 the lite interpreter, _get_model_extra_files_from_buffer) reject every enum \
                 value (\"Enum with type: {name} not found\"); only get_flatbuffer_module_info \
                 reads such a file"
            ),
        ));
    }
}

/// [`check_file`] for a reader of PyTorch `release`: also what that release reads
/// differently from 2.15 (see [`release_violations`]).
pub fn check_file_for(path: &Path, release: Release) -> Result<Vec<FormatError>, Error> {
    let data = crate::jit::map_file(path)?;
    let mut out = check_data(data.clone());
    if out.is_empty() {
        out = release_violations(&data, release);
    }
    Ok(out)
}

/// What PyTorch `release` cannot load in a file that 2.15 loads: tensors of a dtype the
/// release does not know (its unpickler has no storage class for it, its flatbuffer
/// loader no scalar type), one violation per dtype at its first tensor.
pub fn release_violations(data: &Bytes, release: Release) -> Vec<FormatError> {
    if release == Release::LATEST {
        return Vec::new();
    }
    let module = if is_flatbuffer(data) {
        read_flatbuffer(data, None).map(|m| m.module)
    } else {
        ZipArchiveReader::from_bytes(data.clone())
            .and_then(|a| load_archive(&a, &mut LoadOptions::default()))
    };
    let module = match module {
        Ok(m) => m,
        Err(e) => return vec![e],
    };
    let (state, constants) = if is_flatbuffer(data) {
        ("Module.state_obj", "Module.jit_constants")
    } else {
        ("data.pkl", "constants.pkl")
    };
    let mut out = Vec::new();
    let mut reported = HashSet::new();
    let roots = std::iter::once((IValue::Object(module.root.clone()), state.to_string())).chain(
        module
            .constants
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), format!("{constants}[{i}]"))),
    );
    for (root, place) in roots {
        for_each_tensor(&root, &mut |t| {
            let dtype = t.dtype();
            if !release.has_dtype(dtype) && reported.insert(dtype) {
                out.push(FormatError::new(
                    rules::RELEASE_DTYPE,
                    place.clone(),
                    None,
                    format!(
                        "a {} tensor: PyTorch {release} cannot load it (it has no torch.{}, \
                         which came later)",
                        dtype.name(),
                        dtype.storage_name()
                    ),
                ));
            }
        });
    }
    out
}

/// Calls `f` on every tensor reachable from `v` (quantization parameters and sparse
/// components too), each shared container visited once: a file whose values share
/// children is a DAG, and walking it as a tree can take exponential time.
fn for_each_tensor(v: &IValue, f: &mut impl FnMut(&Tensor)) {
    let mut seen: HashSet<usize> = HashSet::new();
    let mut stack = vec![v];
    let mut tensors: Vec<Arc<Tensor>> = Vec::new();
    while let Some(v) = stack.pop() {
        if v.identity().is_some_and(|id| !seen.insert(id)) {
            continue;
        }
        match v {
            IValue::Tensor(t) => tensors.push(t.clone()),
            IValue::Enum(e) => stack.push(&e.value),
            other => stack.extend(other.children()),
        }
    }
    while let Some(t) = tensors.pop() {
        f(&t);
        if let Some(crate::model::Quantization::PerChannel {
            scales,
            zero_points,
            ..
        }) = &t.quantization
        {
            tensors.push(scales.clone());
            tensors.push(zero_points.clone());
        }
        if let Some(sparse) = &t.sparse {
            tensors.extend(sparse.components.iter().cloned());
        }
    }
}

/// Checks a file held in memory, zip archive or flatbuffer (the fuzz targets' entry
/// point).
pub fn check_bytes(data: &[u8]) -> Vec<FormatError> {
    check_data(Bytes::copy_from_slice(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nesting_of(text: &str) -> Option<String> {
        let mut out = Vec::new();
        check_code_nesting(text.as_bytes(), "code/__torch__.py", &mut out);
        out.pop().map(|e| e.message)
    }

    #[test]
    fn operator_chains_count_as_nesting() {
        let body = |terms: usize| {
            format!(
                "def forward(self, x: Tensor) -> Tensor:\n  return {}\n",
                vec!["x"; terms].join(" + ")
            )
        };
        assert_eq!(nesting_of(&body(900)), None);
        let m = nesting_of(&body(1_200)).expect("a 1,200-term chain is flagged");
        assert!(
            m.contains("nested 1199 deep") || m.contains("nested 1200 deep"),
            "{m}"
        );
        // Word operators are a chain too.
        let words = format!(
            "def f(a: bool) -> bool:\n  return {}\n",
            vec!["a"; 1_100].join(" and ")
        );
        assert!(nesting_of(&words).is_some());
        // Commas and statements start new chains: many short sums are shallow.
        let args = format!(
            "def f(x: int) -> int:\n  return g({})\n",
            vec!["x + x"; 2_000].join(", ")
        );
        assert_eq!(nesting_of(&args), None);
        let lines = "def f(x: int) -> int:\n".to_string() + &"  x = x + x + x\n".repeat(2_000);
        assert_eq!(nesting_of(&lines), None);
        // Operators inside string literals are text.
        let text = format!("def f() -> str:\n  return \"{}\"\n", "+".repeat(5_000));
        assert_eq!(nesting_of(&text), None);
        // Brackets still count, and chains inside brackets add to them.
        let deep = format!(
            "def f(x: int) -> int:\n  return {}x{}\n",
            "(".repeat(1_001),
            ")".repeat(1_001)
        );
        assert!(nesting_of(&deep).is_some());
        let mixed = format!(
            "def f(x: int) -> int:\n  return {}x{}\n",
            "(x + x + x + ".repeat(300),
            ")".repeat(300)
        );
        assert!(
            nesting_of(&mixed).is_some(),
            "300 brackets each under 3 operators is 1,200 levels"
        );
    }
}

//! `check`: conformance rules over an archive. Each violation names a stable rule id
//! (see the README), the record and, where known, the byte offset.

use std::path::{Component, Path};

use crate::error::{Error, FormatError, rules};
use crate::model::{CompilationUnit, Definition, IValue, ObjectState, ScriptModule, TypeExpr};
use crate::pickle;
use crate::zip_archive::read::read_pickle;
use crate::zip_archive::{LoadOptions, ZipArchiveReader, load_archive};

/// Result of checking one file: violations, or an I/O error that prevented checking.
pub fn check_file(path: &Path) -> Result<Vec<FormatError>, Error> {
    let archive = match ZipArchiveReader::open(path) {
        Ok(a) => a,
        Err(Error::Format(f)) => return Ok(vec![f]),
        Err(e) => return Err(e),
    };
    Ok(check_archive(&archive))
}

/// True when a record name could escape a directory it is extracted into.
pub fn is_unsafe_name(name: &str) -> bool {
    if name.is_empty() || name.contains('\\') || name.contains('\0') {
        return true;
    }
    Path::new(name)
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
        || name.starts_with('/')
}

pub fn check_archive(archive: &ZipArchiveReader) -> Vec<FormatError> {
    let mut out = Vec::new();
    for rec in archive.records() {
        match &rec.name {
            None => out.push(FormatError::new(
                rules::ZIP_PREFIX,
                rec.full_name.clone(),
                Some(rec.header_offset),
                format!(
                    "entry is outside the archive folder {:?} (PyTorch ignores it)",
                    archive.prefix()
                ),
            )),
            Some(n) if is_unsafe_name(n) => out.push(FormatError::new(
                rules::EXTRA_NAME,
                rec.full_name.clone(),
                Some(rec.header_offset),
                "record name is absolute or contains '..', '\\' or NUL: it would escape an extraction directory",
            )),
            Some(n) if n.contains("//") || n.ends_with('/') => out.push(FormatError::new(
                rules::EXTRA_NAME,
                rec.full_name.clone(),
                Some(rec.header_offset),
                "record name has an empty path component",
            )),
            Some(_) => {}
        }
        if let Err(e) = archive.read_record(rec, true) {
            out.push(e);
        }
    }
    if !out.is_empty() {
        // The container itself is damaged; loading would only repeat these errors.
        return out;
    }
    if let Err(e) = archive.version() {
        out.push(e);
        return out;
    }
    let mut options = LoadOptions {
        verify_crc: true,
        ..Default::default()
    };
    let module = match load_archive(archive, &mut options) {
        Ok(m) => m,
        Err(e) => {
            out.push(e);
            return out;
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
            Ok(text) => match std::str::from_utf8(&text) {
                Ok(t) => {
                    if let Err(e) = crate::code::parse_source(&qualifier, t) {
                        out.push(FormatError::new(
                            rules::CODE_SYNTAX,
                            path.clone(),
                            None,
                            e.to_string(),
                        ));
                    }
                }
                Err(e) => out.push(FormatError::new(
                    rules::CODE_ENCODING,
                    path.clone(),
                    Some(e.valid_up_to() as u64),
                    "code file is not valid UTF-8",
                )),
            },
            Err(e) => out.push(e),
        }
    }
    for (name, dir) in [("data.pkl", "data"), ("constants.pkl", "constants")] {
        if let Ok(pickle::Unpickled { end, .. }) = read_pickle(archive, name, dir, &options) {
            let len = archive.record(name).map_or(0, |r| r.size as usize);
            if end < len {
                out.push(FormatError::new(
                    rules::PICKLE_TRAILING,
                    name,
                    Some(end as u64),
                    format!("{} bytes after STOP (PyTorch ignores them)", len - end),
                ));
            }
        }
    }
    check_attribute_types(&module, &mut out);
    out
}

/// Compares every object attribute with its declared type. PyTorch's loader does not do
/// this (it accepts a bool in an `int` slot), so a mismatch is a conformance finding.
fn check_attribute_types(m: &ScriptModule, out: &mut Vec<FormatError>) {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![m.root.clone()];
    while let Some(o) = stack.pop() {
        if !seen.insert(std::sync::Arc::as_ptr(&o) as usize) {
            continue;
        }
        let Some(class) = m.cu.class(&o.class) else {
            continue;
        };
        if let ObjectState::Attributes(attrs) = &o.state {
            for (name, value) in attrs {
                let n = name.to_string_lossy();
                if let Some(decl) = class.attribute(&n)
                    && !value_matches(value, &decl.ty, &m.cu, 0)
                {
                    out.push(FormatError::new(
                        rules::ATTRIBUTE_TYPE,
                        "data.pkl",
                        None,
                        format!(
                            "{}.{n} is declared {} but holds a {}",
                            o.class,
                            decl.ty,
                            value.kind_name()
                        ),
                    ));
                }
                collect_objects(value, &mut stack);
            }
            let missing: Vec<&str> = class
                .attributes
                .iter()
                .filter(|a| !attrs.iter().any(|(n, _)| n.as_bytes() == a.name.as_bytes()))
                .map(|a| a.name.as_str())
                .collect();
            if !missing.is_empty() {
                out.push(FormatError::new(
                    rules::OBJECT_ATTRIBUTES,
                    "data.pkl",
                    None,
                    format!("{} object lacks declared attributes {missing:?}", o.class),
                ));
            }
        }
    }
}

fn collect_objects(v: &IValue, out: &mut Vec<std::sync::Arc<crate::model::Object>>) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            IValue::Object(o) => out.push(o.clone()),
            other => stack.extend(other.children()),
        }
    }
}

/// Whether `v` can be a value of type `t` (containers checked element-wise).
pub fn value_matches(v: &IValue, t: &TypeExpr, cu: &CompilationUnit, depth: usize) -> bool {
    if depth > 2000 {
        return true;
    }
    let args = t.args();
    match (t.head(), v) {
        ("Any", _) => true,
        ("Optional", IValue::None) => true,
        ("Optional", _) | ("Final", _) => args
            .first()
            .is_none_or(|a| value_matches(v, a, cu, depth + 1)),
        ("NoneType", IValue::None) => true,
        ("Tensor", IValue::Tensor(_)) => true,
        ("int", IValue::Int(_)) => true,
        ("float", IValue::Double(_)) => true,
        ("bool", IValue::Bool(_)) => true,
        ("str", IValue::String(_)) => true,
        ("complex", IValue::Complex(..)) => true,
        ("Device", IValue::Device(_)) => true,
        ("List", IValue::List(l)) => args
            .first()
            .is_none_or(|a| l.items.iter().all(|x| value_matches(x, a, cu, depth + 1))),
        ("Dict", IValue::Dict(d)) => match args {
            [k, val] => d.entries.iter().all(|(dk, dv)| {
                value_matches(dk, k, cu, depth + 1) && value_matches(dv, val, cu, depth + 1)
            }),
            _ => true,
        },
        ("Tuple", IValue::Tuple(tu)) => {
            matches!(t, TypeExpr::EmptyTuple) && tu.items.is_empty()
                || (tu.items.len() == args.len()
                    && tu
                        .items
                        .iter()
                        .zip(args)
                        .all(|(x, a)| value_matches(x, a, cu, depth + 1)))
        }
        (name, _) if name.contains('.') => match cu.get_str(name) {
            Some(Definition::Class(_)) => {
                matches!(v, IValue::Object(o) if o.class.as_str() == name)
            }
            Some(Definition::Interface(_)) => matches!(v, IValue::Object(_)),
            Some(Definition::Enum(_)) => {
                matches!(v, IValue::Enum(e) if e.enum_type.as_str() == name)
            }
            Some(Definition::NamedTuple(nt)) => {
                matches!(v, IValue::Tuple(tu) if tu.items.len() == nt.fields.len()
                    && tu.items.iter().zip(&nt.fields).all(|(x, (_, ft))| value_matches(x, ft, cu, depth + 1)))
            }
            // Custom C++ classes and unknown names: nothing to compare against.
            _ => true,
        },
        _ => false,
    }
}

/// Checks an archive held in memory (the fuzz targets' entry point).
pub fn check_bytes(data: &[u8]) -> Vec<FormatError> {
    match ZipArchiveReader::from_bytes(bytes::Bytes::copy_from_slice(data)) {
        Ok(a) => check_archive(&a),
        Err(e) => vec![e],
    }
}

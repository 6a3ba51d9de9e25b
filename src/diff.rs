//! `diff`: compares two archives by meaning, in either format.
//!
//! Compared: the module tree (paths and class names), parameters and buffers (dtype,
//! shape, device, `requires_grad`, values), plain attribute values (recursively), the
//! defined types, tensor constants, code (as a unified diff), extra files; for two zip
//! archives also the container layout (prefix, `version`, record order, compression);
//! for two flatbuffers also the bytecode (versions, instructions, operators, constants,
//! schemas).
//!
//! Ignored, as PyTorch varies them on its own: `.data/serialization_id`, padding and
//! offsets, CRCs of identical content, `*.debug_pkl` records, flatbuffer debug handles,
//! which ivalues/strings a writer shares, and the memo decisions of the pickler.
//! A zip archive and a flatbuffer are compared as modules: container details that only
//! one format has (version, prefix, records; bytecode) are not compared.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::dump::show_bytes;
use ptconform_core::error::Result;
use ptconform_core::flatbuffer::{MobileModule, read_flatbuffer};
use ptconform_core::jit::{FileFormat, file_format};
use ptconform_core::model::bytecode::BytecodeFunction;
use ptconform_core::model::types::qualifier_to_code_path;
use ptconform_core::model::{IValue, Object, ObjectState, Quantization, ScriptModule, Tensor};
use ptconform_core::zip_archive::read::Method;
use ptconform_core::zip_archive::{LoadOptions, ZipArchiveReader, load_archive};

/// What happened to one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Only in B.
    Added,
    /// Only in A.
    Removed,
    /// In both, different.
    Changed,
}

impl ChangeKind {
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Changed => "changed",
        }
    }

    fn sign(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
        }
    }
}

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `modules`, `parameters`, `buffers`, `attributes`, `types`, `constants`, `code`,
    /// `extra_files`, `layout` or `bytecode`.
    pub section: &'static str,
    /// What differs: a module path, attribute path, file name, ... (with a `: what`
    /// suffix when one item differs in several ways, e.g. `lin.weight: shape`).
    pub path: String,
    pub kind: ChangeKind,
    /// A's side (absent for `Added`).
    pub a: Option<String>,
    /// B's side (absent for `Removed`).
    pub b: Option<String>,
    /// A unified diff (code, record order).
    pub diff: Option<String>,
}

/// The differences between two archives.
#[derive(Clone, Debug)]
pub struct DiffReport {
    pub a_format: FileFormat,
    pub b_format: FileFormat,
    pub changes: Vec<Change>,
    /// What differs in form only (not a difference), one line each.
    pub notes: Vec<String>,
}

/// Order of the sections in reports.
const SECTIONS: &[&str] = &[
    "modules",
    "parameters",
    "buffers",
    "attributes",
    "types",
    "constants",
    "code",
    "extra_files",
    "bytecode",
    "layout",
];

fn format_name(f: FileFormat) -> &'static str {
    match f {
        FileFormat::Zip => "zip",
        FileFormat::Flatbuffer => "flatbuffer",
    }
}

impl DiffReport {
    pub fn is_equal(&self) -> bool {
        self.changes.is_empty()
    }

    /// The human report: `equal`, or the differences by section
    /// (`+` only in B, `-` only in A, `~` changed: `A -> B`).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        if self.a_format != self.b_format {
            let _ = writeln!(
                s,
                "note: A is a {} and B a {}: modules compared, container layout not",
                format_name(self.a_format),
                format_name(self.b_format)
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        if self.is_equal() {
            s.push_str("equal\n");
            return s;
        }
        let n = self.changes.len();
        let _ = writeln!(s, "{n} difference{}", if n == 1 { "" } else { "s" });
        for section in SECTIONS {
            let items: Vec<&Change> = self
                .changes
                .iter()
                .filter(|c| c.section == *section)
                .collect();
            if items.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n{section}:");
            for c in items {
                let detail = match (c.kind, &c.a, &c.b) {
                    (ChangeKind::Changed, Some(a), Some(b)) => format!(": {a} -> {b}"),
                    (ChangeKind::Added, _, Some(b)) => format!(": {b}"),
                    (ChangeKind::Removed, Some(a), _) => format!(": {a}"),
                    _ => String::new(),
                };
                let _ = writeln!(s, "  {} {}{detail}", c.kind.sign(), c.path);
                if let Some(d) = &c.diff {
                    for line in d.lines() {
                        let _ = writeln!(s, "      {line}");
                    }
                }
            }
        }
        s
    }

    /// `{"equal", "a_format", "b_format", "differences": [{section, path, change, a, b,
    /// diff}]}` (`a`/`b`/`diff` null when not applicable).
    pub fn to_json(&self) -> Value {
        let diffs: Vec<Value> = self
            .changes
            .iter()
            .map(|c| {
                json!({
                    "section": c.section,
                    "path": c.path,
                    "change": c.kind.name(),
                    "a": c.a,
                    "b": c.b,
                    "diff": c.diff,
                })
            })
            .collect();
        json!({
            "equal": self.is_equal(),
            "a_format": format_name(self.a_format),
            "b_format": format_name(self.b_format),
            "differences": diffs,
            "notes": self.notes,
        })
    }
}

/// One side, loaded.
struct Side {
    format: FileFormat,
    module: ScriptModule,
    /// Every extra file as `torch.jit.load` would return it (a name stored twice in a
    /// flatbuffer keeps its last content).
    extra: BTreeMap<String, Bytes>,
    /// `code/<path>.py` → text (zip: the records; flatbuffer: `jit_sources`).
    code: BTreeMap<String, String>,
    zip: Option<ZipLayout>,
    mobile: Option<MobileModule>,
}

struct ZipLayout {
    prefix: String,
    version: u64,
    /// Record names (relative to the prefix) and compression, in archive order, without
    /// the `.debug_pkl` records.
    records: Vec<(String, Method)>,
}

fn load_side(data: Bytes) -> Result<Side> {
    let format = file_format(&data);
    match format {
        FileFormat::Flatbuffer => {
            let mobile = read_flatbuffer(&data, None)?;
            let extra = mobile.extra_files.iter().cloned().collect();
            let code = mobile
                .jit_sources
                .iter()
                .map(|(q, t)| (qualifier_to_code_path(q), t.clone()))
                .collect();
            Ok(Side {
                format,
                module: mobile.module.clone(),
                extra,
                code,
                zip: None,
                mobile: Some(mobile),
            })
        }
        FileFormat::Zip => {
            let archive = ZipArchiveReader::from_bytes(data)?;
            let module = load_archive(&archive, &mut LoadOptions::default())?;
            let mut extra = BTreeMap::new();
            for name in archive.extra_file_names() {
                let d = archive.read(&format!("extra/{name}"), false)?;
                extra.insert(name, d);
            }
            let mut code = BTreeMap::new();
            let mut records = Vec::new();
            for r in archive.records() {
                let Some(name) = r.name() else {
                    continue;
                };
                if name.ends_with(".debug_pkl") {
                    continue;
                }
                records.push((name.to_string(), r.method));
                if name.starts_with("code/") && name.ends_with(".py") {
                    let d = archive.read_record(r, false)?;
                    code.insert(name.to_string(), String::from_utf8_lossy(&d).into_owned());
                }
            }
            let (version, _) = archive.version()?;
            Ok(Side {
                format,
                module,
                extra,
                code,
                zip: Some(ZipLayout {
                    prefix: archive.prefix().to_string(),
                    version,
                    records,
                }),
                mobile: None,
            })
        }
    }
}

/// Whether `data` loads as [`diff`] loads each side (to tell which input is bad).
pub fn load_check(data: &[u8]) -> Result<()> {
    load_side(Bytes::copy_from_slice(data)).map(|_| ())
}

/// Compares two archives (either format) by meaning.
pub fn diff(a: &[u8], b: &[u8]) -> Result<DiffReport> {
    let a = load_side(Bytes::copy_from_slice(a))?;
    let b = load_side(Bytes::copy_from_slice(b))?;
    let mut d = Differ {
        changes: Vec::new(),
        notes: Vec::new(),
        cross_format: a.format != b.format,
        a_render: Renderer::default(),
        b_render: Renderer::default(),
        compared: HashSet::new(),
        revisited: 0,
        value_changes: 0,
        unlisted: 0,
    };
    d.modules(&a.module, &b.module);
    d.tensors("parameters", &a.module, &b.module);
    d.tensors("buffers", &a.module, &b.module);
    d.attributes(&a.module, &b.module);
    d.types(&a.module, &b.module);
    d.constants(&a.module, &b.module);
    d.code(&a.code, &b.code);
    d.extra(&a.extra, &b.extra);
    if let (Some(x), Some(y)) = (&a.mobile, &b.mobile) {
        d.bytecode(x, y);
    }
    if let (Some(x), Some(y)) = (&a.zip, &b.zip) {
        d.layout(x, y);
    }
    if d.revisited > 0 {
        let n = d.revisited;
        d.notes.push(format!(
            "attributes: {n} more path{} reach{} shared values already compared (each difference is listed once, at its first path)",
            if n == 1 { "" } else { "s" },
            if n == 1 { "es" } else { "" }
        ));
    }
    if d.unlisted > 0 {
        d.notes.push(format!(
            "attributes: {} more value differences not listed (at most {MAX_VALUE_CHANGES} are)",
            d.unlisted
        ));
    }
    // Stable order: by section as listed, then in discovery order.
    let mut changes = d.changes;
    changes.sort_by_key(|c| SECTIONS.iter().position(|s| *s == c.section));
    Ok(DiffReport {
        a_format: a.format,
        b_format: b.format,
        changes,
        notes: d.notes,
    })
}

/// Canonical one-line renderings of values, memoized by identity (so shared values are
/// rendered once and a shared DAG cannot blow up), depth- and length-bounded.
#[derive(Default)]
struct Renderer {
    memo: HashMap<usize, String>,
    /// Strings by the address and length of their bytes: a string the pickle memo or a
    /// flatbuffer hands out many times is one buffer, rendered (and hashed) once.
    strings: HashMap<(usize, usize), String>,
}

/// Where a string's bytes are: two strings at the same place have the same bytes.
fn string_identity(s: &ptconform_core::model::Str) -> (usize, usize) {
    (s.0.as_ptr() as usize, s.0.len())
}

/// Most attribute value differences listed; past it they are counted in a note.
const MAX_VALUE_CHANGES: usize = 1000;

/// Renderings longer than this are replaced by a digest of the full text.
const RENDER_LIMIT: usize = 160;
const MAX_DEPTH: usize = 64;

fn short_sha(data: &[u8]) -> String {
    let h = Sha256::digest(data);
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn float(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{v:?}")
    }
}

/// The viewed elements of a tensor, as their bytes in row-major order, hashed; `None`
/// when the tensor has no data (meta) or the view does not fit its storage.
fn tensor_values_digest(t: &Tensor) -> Option<String> {
    if let Some(sparse) = &t.sparse {
        // A sparse tensor's values are its components' (indices and values).
        let parts: Option<Vec<String>> = sparse
            .components
            .iter()
            .map(|c| tensor_values_digest(c))
            .collect();
        return Some(short_sha(parts?.join(" ").as_bytes()));
    }
    if t.device().is_meta() {
        return None;
    }
    let es = t.dtype().element_size() as usize;
    let data = &t.storage.data;
    let numel = t.numel();
    let mut h = Sha256::new();
    if numel == 0 {
        return Some(short_sha(b""));
    }
    let (lo, hi) = t.storage_extent().ok()??;
    if lo < 0 || (hi as u128).saturating_mul(es as u128) > data.len() as u128 {
        return None;
    }
    if numel > (1 << 24) {
        // Too many elements to walk (an expanded view): hash what defines them.
        h.update(format!(
            "{:?} {:?} {}",
            t.sizes, t.strides, t.storage_offset
        ));
        h.update(&data[lo as usize * es..hi as usize * es]);
    } else {
        let nd = t.sizes.len();
        let mut idx = vec![0i64; nd];
        loop {
            let off: i64 =
                t.storage_offset + idx.iter().zip(&t.strides).map(|(i, s)| i * s).sum::<i64>();
            let off = off as usize * es;
            h.update(&data[off..off + es]);
            // Next index, last dimension fastest.
            let mut d = nd;
            loop {
                if d == 0 {
                    let out = h.finalize();
                    return Some(out.iter().take(8).map(|b| format!("{b:02x}")).collect());
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < t.sizes[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    let out = h.finalize();
    Some(out.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

fn tensor_meta(t: &Tensor) -> String {
    let shape: Vec<String> = t.sizes.iter().map(|s| s.to_string()).collect();
    let mut s = format!("{} [{}] {}", t.dtype().name(), shape.join(", "), t.device());
    if let Some(sparse) = &t.sparse {
        let parts: Vec<String> = sparse
            .components
            .iter()
            .map(|c| format!("{:?}", c.sizes.as_slice()))
            .collect();
        s.push_str(&format!(
            " {} components {}",
            sparse.layout.name(),
            parts.join(" ")
        ));
    }
    if t.requires_grad {
        s.push_str(" requires_grad");
    }
    if t.conj {
        s.push_str(" conj");
    }
    if t.neg {
        s.push_str(" neg");
    }
    s
}

fn quant_desc(t: &Tensor) -> Option<String> {
    Some(match t.quantization.as_ref()? {
        Quantization::PerTensor {
            scheme,
            scale,
            zero_point,
        } => format!(
            "{} scale {} zero_point {zero_point}",
            scheme.name(),
            float(*scale)
        ),
        Quantization::PerChannel {
            scheme,
            scales,
            zero_points,
            axis,
        } => format!(
            "{} axis {axis} scales {} zero_points {}",
            scheme.name(),
            tensor_values_digest(scales).unwrap_or_else(|| "-".into()),
            tensor_values_digest(zero_points).unwrap_or_else(|| "-".into())
        ),
    })
}

fn tensor_values(t: &Tensor) -> String {
    match tensor_values_digest(t) {
        Some(d) => format!("sha256 {d}"),
        None => "no values".to_string(),
    }
}

impl Renderer {
    fn render(&mut self, v: &IValue) -> String {
        self.render_at(v, 0)
    }

    fn render_at(&mut self, v: &IValue, depth: usize) -> String {
        if let Some(id) = v.identity()
            && let Some(s) = self.memo.get(&id)
        {
            return s.clone();
        }
        if let IValue::String(s) = v {
            let id = string_identity(s);
            if let Some(r) = self.strings.get(&id) {
                return r.clone();
            }
            let r = limit(v, show_bytes(s.as_bytes()));
            self.strings.insert(id, r.clone());
            return r;
        }
        if depth > MAX_DEPTH {
            return "…".to_string();
        }
        let s = match v {
            IValue::None => "None".to_string(),
            IValue::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            IValue::Int(i) => i.to_string(),
            IValue::Double(f) => float(*f),
            IValue::Complex(re, im) => format!("complex({}, {})", float(*re), float(*im)),
            IValue::String(s) => show_bytes(s.as_bytes()),
            IValue::Device(d) => format!("device({d})"),
            IValue::Tensor(t) => {
                let mut s = format!("tensor({} values {}", tensor_meta(t), tensor_values(t));
                if let Some(q) = quant_desc(t) {
                    let _ = write!(s, " {q}");
                }
                s.push(')');
                s
            }
            IValue::Tuple(t) => {
                let items: Vec<String> = t
                    .items
                    .iter()
                    .map(|i| self.render_at(i, depth + 1))
                    .collect();
                if items.len() == 1 {
                    format!("({},)", items[0])
                } else {
                    format!("({})", items.join(", "))
                }
            }
            IValue::List(l) => {
                let items: Vec<String> = l
                    .items
                    .iter()
                    .map(|i| self.render_at(i, depth + 1))
                    .collect();
                format!("[{}]", items.join(", "))
            }
            IValue::Dict(d) => {
                let items: Vec<String> = d
                    .entries
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{}: {}",
                            self.render_at(k, depth + 1),
                            self.render_at(v, depth + 1)
                        )
                    })
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
            IValue::Object(o) => match &o.state {
                ObjectState::Attributes(attrs) => {
                    let items: Vec<String> = attrs
                        .iter()
                        .map(|(n, v)| {
                            format!("{}={}", n.to_string_lossy(), self.render_at(v, depth + 1))
                        })
                        .collect();
                    format!("{}({})", o.class, items.join(", "))
                }
                ObjectState::SetState(s) => {
                    format!("{}(__setstate__ {})", o.class, self.render_at(s, depth + 1))
                }
            },
            IValue::Enum(e) => format!("{}({})", e.enum_type, self.render_at(&e.value, depth + 1)),
        };
        let s = limit(v, s);
        if let Some(id) = v.identity() {
            self.memo.insert(id, s.clone());
        }
        s
    }
}

/// `s`, the rendering of `v`, or a digest of it when it is longer than [`RENDER_LIMIT`].
fn limit(v: &IValue, s: String) -> String {
    // `chars().count() > RENDER_LIMIT` without counting past the limit.
    if s.len() > RENDER_LIMIT && s.chars().nth(RENDER_LIMIT).is_some() {
        format!(
            "<{} {} chars sha256 {}>",
            v.kind_name(),
            s.len(),
            short_sha(s.as_bytes())
        )
    } else {
        s
    }
}

struct Differ {
    changes: Vec<Change>,
    notes: Vec<String>,
    /// A and B are in different formats.
    cross_format: bool,
    a_render: Renderer,
    b_render: Renderer,
    /// Pairs of shared values (A's identity, B's) already compared by [`Differ::value`]:
    /// a DAG of shared containers is walked once per distinct pair, not once per path.
    compared: HashSet<(usize, usize)>,
    /// Paths skipped because they reach a pair in `compared` that differs.
    revisited: usize,
    /// Attribute value differences listed, and those past [`MAX_VALUE_CHANGES`].
    value_changes: usize,
    unlisted: usize,
}

fn join_path(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}.{name}")
    }
}

/// Attribute names of a module object that hold submodules, parameters or buffers
/// (compared elsewhere).
fn non_plain(m: &ScriptModule, o: &Object) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = m.children(o).map(|(n, _)| n).collect();
    if let Some(c) = m.cu.class(&o.class) {
        s.extend(c.parameters.iter().cloned());
        s.extend(c.buffers.iter().cloned());
    }
    s
}

impl Differ {
    fn push(
        &mut self,
        section: &'static str,
        path: impl Into<String>,
        kind: ChangeKind,
        a: Option<String>,
        b: Option<String>,
    ) {
        self.changes.push(Change {
            section,
            path: path.into(),
            kind,
            a,
            b,
            diff: None,
        });
    }

    fn changed(&mut self, section: &'static str, path: impl Into<String>, a: String, b: String) {
        self.push(section, path, ChangeKind::Changed, Some(a), Some(b));
    }

    fn modules(&mut self, a: &ScriptModule, b: &ScriptModule) {
        let am = a.named_modules();
        let bm = b.named_modules();
        let bmap: HashMap<&str, &str> = bm
            .iter()
            .map(|m| (m.name.as_str(), m.object.class.as_str()))
            .collect();
        let amap: HashMap<&str, &str> = am
            .iter()
            .map(|m| (m.name.as_str(), m.object.class.as_str()))
            .collect();
        let show = |n: &str| {
            if n.is_empty() {
                "<root>".to_string()
            } else {
                n.to_string()
            }
        };
        for m in &am {
            match bmap.get(m.name.as_str()) {
                None => self.push(
                    "modules",
                    show(&m.name),
                    ChangeKind::Removed,
                    Some(m.object.class.to_string()),
                    None,
                ),
                Some(bc) if *bc != m.object.class.as_str() => {
                    self.changed(
                        "modules",
                        format!("{}: class", show(&m.name)),
                        m.object.class.to_string(),
                        bc.to_string(),
                    );
                }
                _ => {}
            }
        }
        for m in &bm {
            if !amap.contains_key(m.name.as_str()) {
                self.push(
                    "modules",
                    show(&m.name),
                    ChangeKind::Added,
                    None,
                    Some(m.object.class.to_string()),
                );
            }
        }
        // Same modules, another order (attribute order is part of the module).
        let an: Vec<&str> = am
            .iter()
            .map(|m| m.name.as_str())
            .filter(|n| bmap.contains_key(n))
            .collect();
        let bn: Vec<&str> = bm
            .iter()
            .map(|m| m.name.as_str())
            .filter(|n| amap.contains_key(n))
            .collect();
        if an != bn {
            self.changed(
                "modules",
                "order",
                an.iter().map(|n| show(n)).collect::<Vec<_>>().join(", "),
                bn.iter().map(|n| show(n)).collect::<Vec<_>>().join(", "),
            );
        }
    }

    fn tensors(&mut self, section: &'static str, a: &ScriptModule, b: &ScriptModule) {
        let pick = |m: &ScriptModule| {
            if section == "parameters" {
                m.named_parameters()
            } else {
                m.named_buffers()
            }
        };
        let at = pick(a);
        let bt = pick(b);
        let bmap: HashMap<&str, &Arc<Tensor>> =
            bt.iter().map(|t| (t.name.as_str(), &t.tensor)).collect();
        let amap: HashMap<&str, &Arc<Tensor>> =
            at.iter().map(|t| (t.name.as_str(), &t.tensor)).collect();
        for t in &at {
            let Some(other) = bmap.get(t.name.as_str()) else {
                self.push(
                    section,
                    &t.name,
                    ChangeKind::Removed,
                    Some(tensor_meta(&t.tensor)),
                    None,
                );
                continue;
            };
            let (x, y) = (&t.tensor, *other);
            let shape = |t: &Tensor| format!("{:?}", t.sizes);
            let checks: [(&str, String, String); 5] = [
                ("dtype", x.dtype().name().into(), y.dtype().name().into()),
                ("shape", shape(x), shape(y)),
                ("device", x.device().to_string(), y.device().to_string()),
                (
                    "requires_grad",
                    x.requires_grad.to_string(),
                    y.requires_grad.to_string(),
                ),
                (
                    "quantization",
                    quant_desc(x).unwrap_or_else(|| "none".into()),
                    quant_desc(y).unwrap_or_else(|| "none".into()),
                ),
            ];
            for (what, va, vb) in checks {
                if va != vb {
                    self.changed(section, format!("{}: {what}", t.name), va, vb);
                }
            }
            let (va, vb) = (tensor_values(x), tensor_values(y));
            let (ma, mb) = (
                format!("conj {} neg {}", x.conj, x.neg),
                format!("conj {} neg {}", y.conj, y.neg),
            );
            if ma != mb {
                self.changed(section, format!("{}: math bits", t.name), ma, mb);
            }
            if x.sizes == y.sizes && x.dtype() == y.dtype() && va != vb {
                self.changed(section, format!("{}: values", t.name), va, vb);
            }
        }
        for t in &bt {
            if !amap.contains_key(t.name.as_str()) {
                self.push(
                    section,
                    &t.name,
                    ChangeKind::Added,
                    None,
                    Some(tensor_meta(&t.tensor)),
                );
            }
        }
        let an: Vec<&str> = at
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| bmap.contains_key(n))
            .collect();
        let bn: Vec<&str> = bt
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| amap.contains_key(n))
            .collect();
        if an != bn {
            self.changed(section, "order", an.join(", "), bn.join(", "));
        }
    }

    /// Plain attributes of every module present in both trees.
    fn attributes(&mut self, a: &ScriptModule, b: &ScriptModule) {
        let bm: HashMap<String, Arc<Object>> = b
            .named_modules()
            .into_iter()
            .map(|m| (m.name, m.object))
            .collect();
        for m in a.named_modules() {
            let Some(bo) = bm.get(&m.name) else { continue };
            let ao = &m.object;
            match (&ao.state, &bo.state) {
                (ObjectState::SetState(x), ObjectState::SetState(y)) => {
                    self.value(&join_path(&m.name, "__getstate__()"), x, y);
                    continue;
                }
                (ObjectState::Attributes(_), ObjectState::Attributes(_)) => {}
                _ => {
                    let x = self.a_render.render(&IValue::Object(ao.clone()));
                    let y = self.b_render.render(&IValue::Object(bo.clone()));
                    self.changed("attributes", join_path(&m.name, "<state>"), x, y);
                    continue;
                }
            }
            let mut skip = non_plain(a, ao);
            skip.extend(non_plain(b, bo));
            let battrs: HashMap<String, &IValue> = bo
                .attributes()
                .iter()
                .map(|(n, v)| (n.to_string_lossy(), v))
                .collect();
            let aattrs: BTreeSet<String> = ao
                .attributes()
                .iter()
                .map(|(n, _)| n.to_string_lossy())
                .collect();
            for (n, v) in ao.attributes() {
                let n = n.to_string_lossy();
                if skip.contains(&n) {
                    continue;
                }
                let path = join_path(&m.name, &n);
                match battrs.get(&n) {
                    Some(w) => self.value(&path, v, w),
                    None => {
                        let r = self.a_render.render(v);
                        self.push("attributes", path, ChangeKind::Removed, Some(r), None);
                    }
                }
            }
            for (n, v) in bo.attributes() {
                let n = n.to_string_lossy();
                if skip.contains(&n) || aattrs.contains(&n) {
                    continue;
                }
                let r = self.b_render.render(v);
                self.push(
                    "attributes",
                    join_path(&m.name, &n),
                    ChangeKind::Added,
                    None,
                    Some(r),
                );
            }
        }
    }

    /// Compares two values at `path`, descending into containers and objects of the
    /// same shape so the report names the innermost difference.
    fn value(&mut self, path: &str, x: &IValue, y: &IValue) {
        self.value_at(path, x, y, 0);
    }

    fn value_at(&mut self, path: &str, x: &IValue, y: &IValue, depth: usize) {
        let rx = self.a_render.render(x);
        let ry = self.b_render.render(y);
        if rx == ry {
            return;
        }
        if let (Some(ix), Some(iy)) = (x.identity(), y.identity())
            && !self.compared.insert((ix, iy))
        {
            // This pair differs and was reported where it was first reached.
            self.revisited += 1;
            return;
        }
        if depth < MAX_DEPTH {
            match (x, y) {
                (IValue::Object(a), IValue::Object(b)) if a.class == b.class => {
                    if let (ObjectState::Attributes(aa), ObjectState::Attributes(ba)) =
                        (&a.state, &b.state)
                        && aa.len() == ba.len()
                        && aa.iter().zip(ba.iter()).all(|((n, _), (m, _))| n == m)
                    {
                        for ((n, av), (_, bv)) in aa.iter().zip(ba.iter()) {
                            let p = format!("{path}.{}", n.to_string_lossy());
                            self.value_at(&p, av, bv, depth + 1);
                        }
                        return;
                    }
                }
                (IValue::List(a), IValue::List(b)) if a.items.len() == b.items.len() => {
                    for (i, (av, bv)) in a.items.iter().zip(&b.items).enumerate() {
                        self.value_at(&format!("{path}[{i}]"), av, bv, depth + 1);
                    }
                    return;
                }
                (IValue::Tuple(a), IValue::Tuple(b)) if a.items.len() == b.items.len() => {
                    for (i, (av, bv)) in a.items.iter().zip(&b.items).enumerate() {
                        self.value_at(&format!("{path}[{i}]"), av, bv, depth + 1);
                    }
                    return;
                }
                (IValue::Dict(a), IValue::Dict(b)) if a.entries.len() == b.entries.len() => {
                    let keys_a: Vec<String> = a
                        .entries
                        .iter()
                        .map(|(k, _)| self.a_render.render(k))
                        .collect();
                    let keys_b: Vec<String> = b
                        .entries
                        .iter()
                        .map(|(k, _)| self.b_render.render(k))
                        .collect();
                    if keys_a == keys_b {
                        for (k, ((_, av), (_, bv))) in
                            keys_a.iter().zip(a.entries.iter().zip(&b.entries))
                        {
                            self.value_at(&format!("{path}[{k}]"), av, bv, depth + 1);
                        }
                        return;
                    }
                }
                _ => {}
            }
        }
        if self.value_changes >= MAX_VALUE_CHANGES {
            self.unlisted += 1;
            return;
        }
        self.value_changes += 1;
        self.changed("attributes", path, rx, ry);
    }

    fn types(&mut self, a: &ScriptModule, b: &ScriptModule) {
        let names = |m: &ScriptModule| -> BTreeMap<String, &'static str> {
            m.cu.definitions()
                .map(|d| (d.name().to_string(), d.kind_name()))
                .collect()
        };
        let (an, bn) = (names(a), names(b));
        for (n, k) in &an {
            match bn.get(n) {
                None => self.push("types", n, ChangeKind::Removed, Some(k.to_string()), None),
                Some(bk) if bk != k => self.changed("types", n, k.to_string(), bk.to_string()),
                _ => {}
            }
        }
        for (n, k) in &bn {
            if !an.contains_key(n) {
                self.push("types", n, ChangeKind::Added, None, Some(k.to_string()));
            }
        }
    }

    fn constants(&mut self, a: &ScriptModule, b: &ScriptModule) {
        let n = a.constants.len().max(b.constants.len());
        for i in 0..n {
            let path = format!("CONSTANTS.c{i}");
            match (a.constants.get(i), b.constants.get(i)) {
                (Some(x), Some(y)) => {
                    let (rx, ry) = (self.a_render.render(x), self.b_render.render(y));
                    if rx != ry {
                        self.changed("constants", path, rx, ry);
                    }
                }
                (Some(x), None) => {
                    let r = self.a_render.render(x);
                    self.push("constants", path, ChangeKind::Removed, Some(r), None);
                }
                (None, Some(y)) => {
                    let r = self.b_render.render(y);
                    self.push("constants", path, ChangeKind::Added, None, Some(r));
                }
                (None, None) => {}
            }
        }
    }

    fn code(&mut self, a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) {
        let lines = |t: &str| format!("{} lines", t.lines().count());
        for (path, ta) in a {
            match b.get(path) {
                None => self.push("code", path, ChangeKind::Removed, Some(lines(ta)), None),
                Some(tb) if tb != ta => {
                    let (da, db) = (definitions(ta), definitions(tb));
                    if self.cross_format && same_up_to_form(&da, &db) {
                        // PyTorch's zip and flatbuffer writers print one module with
                        // definitions in another order and generated local names
                        // numbered differently; neither is observable.
                        self.notes.push(format!(
                            "{path}: the same definitions, printed in another order or with other generated local names (form, not meaning)"
                        ));
                        continue;
                    }
                    if da != db && sorted(&da) == sorted(&db) {
                        // The same definitions in another order: PyTorch's flatbuffer
                        // writer orders classes differently from its zip writer, so
                        // across formats this is not a difference.
                        if !self.cross_format {
                            let names = |d: &[&str]| -> String {
                                d.iter()
                                    .map(|b| b.lines().next().unwrap_or("").trim_end_matches(':'))
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            };
                            self.changed(
                                "code",
                                format!("{path}: definition order"),
                                names(&da),
                                names(&db),
                            );
                        }
                        continue;
                    }
                    let d = unified_diff(ta, tb, &format!("a/{path}"), &format!("b/{path}"), 3);
                    self.changes.push(Change {
                        section: "code",
                        path: path.clone(),
                        kind: ChangeKind::Changed,
                        a: None,
                        b: None,
                        diff: Some(d),
                    });
                }
                _ => {}
            }
        }
        for (path, tb) in b {
            if !a.contains_key(path) {
                self.push("code", path, ChangeKind::Added, None, Some(lines(tb)));
            }
        }
    }

    fn extra(&mut self, a: &BTreeMap<String, Bytes>, b: &BTreeMap<String, Bytes>) {
        let shown = |n: &str| show_bytes(n.as_bytes());
        for (n, x) in a {
            match b.get(n) {
                None => self.push(
                    "extra_files",
                    shown(n),
                    ChangeKind::Removed,
                    Some(show_bytes(x)),
                    None,
                ),
                Some(y) if x != y => {
                    self.changed("extra_files", shown(n), show_bytes(x), show_bytes(y))
                }
                _ => {}
            }
        }
        for (n, y) in b {
            if !a.contains_key(n) {
                self.push(
                    "extra_files",
                    shown(n),
                    ChangeKind::Added,
                    None,
                    Some(show_bytes(y)),
                );
            }
        }
    }

    fn layout(&mut self, a: &ZipLayout, b: &ZipLayout) {
        if a.prefix != b.prefix {
            self.changed(
                "layout",
                "prefix",
                format!("{:?}", a.prefix),
                format!("{:?}", b.prefix),
            );
        }
        if a.version != b.version {
            self.changed(
                "layout",
                "version",
                a.version.to_string(),
                b.version.to_string(),
            );
        }
        let names =
            |l: &ZipLayout| -> Vec<String> { l.records.iter().map(|r| r.0.clone()).collect() };
        let (an, bn) = (names(a), names(b));
        let aset: BTreeSet<&String> = an.iter().collect();
        let bset: BTreeSet<&String> = bn.iter().collect();
        for n in an.iter().filter(|n| !bset.contains(n)) {
            self.push(
                "layout",
                format!("record {n}"),
                ChangeKind::Removed,
                None,
                None,
            );
        }
        for n in bn.iter().filter(|n| !aset.contains(n)) {
            self.push(
                "layout",
                format!("record {n}"),
                ChangeKind::Added,
                None,
                None,
            );
        }
        let common_a: Vec<&String> = an.iter().filter(|n| bset.contains(n)).collect();
        let common_b: Vec<&String> = bn.iter().filter(|n| aset.contains(n)).collect();
        if common_a != common_b {
            let ta: String = common_a.iter().map(|n| format!("{n}\n")).collect();
            let tb: String = common_b.iter().map(|n| format!("{n}\n")).collect();
            self.changes.push(Change {
                section: "layout",
                path: "record order".into(),
                kind: ChangeKind::Changed,
                a: None,
                b: None,
                diff: Some(unified_diff(&ta, &tb, "a", "b", 1)),
            });
        }
        let bm: HashMap<&String, Method> = b.records.iter().map(|(n, m)| (n, *m)).collect();
        for (n, m) in &a.records {
            if let Some(bm) = bm.get(n)
                && *bm != *m
            {
                self.changed(
                    "layout",
                    format!("record {n}: compression"),
                    format!("{m:?}").to_lowercase(),
                    format!("{bm:?}").to_lowercase(),
                );
            }
        }
    }

    fn function(&mut self, path: &str, x: &BytecodeFunction, y: &BytecodeFunction) {
        let ins = |f: &BytecodeFunction| -> String {
            f.instructions
                .iter()
                .map(|i| format!("{} {} {}\n", i.op.name(), i.n, i.x))
                .collect()
        };
        let (ia, ib) = (ins(x), ins(y));
        if ia != ib {
            self.changes.push(Change {
                section: "bytecode",
                path: format!("{path}: instructions"),
                kind: ChangeKind::Changed,
                a: None,
                b: None,
                diff: Some(unified_diff(&ia, &ib, "a", "b", 2)),
            });
        }
        let ops = |f: &BytecodeFunction| -> String {
            let v: Vec<String> = f
                .operators
                .iter()
                .map(|o| format!("{}/{}", o.full_name(), o.num_args.unwrap_or(-1)))
                .collect();
            v.join(", ")
        };
        let (oa, ob) = (ops(x), ops(y));
        if oa != ob {
            self.changed("bytecode", format!("{path}: operators"), oa, ob);
        }
        let ca: Vec<String> = x
            .constants
            .iter()
            .map(|c| self.a_render.render(c))
            .collect();
        let cb: Vec<String> = y
            .constants
            .iter()
            .map(|c| self.b_render.render(c))
            .collect();
        if ca != cb {
            self.changed(
                "bytecode",
                format!("{path}: constants"),
                ca.join(", "),
                cb.join(", "),
            );
        }
        if x.type_annotations != y.type_annotations {
            self.changed(
                "bytecode",
                format!("{path}: type_annotations"),
                x.type_annotations.join(", "),
                y.type_annotations.join(", "),
            );
        }
        if x.register_size != y.register_size {
            self.changed(
                "bytecode",
                format!("{path}: register_size"),
                x.register_size.to_string(),
                y.register_size.to_string(),
            );
        }
        let schema = |f: &BytecodeFunction, r: &mut Renderer| -> String {
            let Some(s) = &f.schema else {
                return "none".into();
            };
            let mut arg = |a: &ptconform_core::model::bytecode::Arg| {
                let mut t = format!("{}: {}", a.name, a.type_str);
                if let Some(d) = &a.default_value {
                    let _ = write!(t, " = {}", r.render(d));
                }
                t
            };
            let args: Vec<String> = s.arguments.iter().map(&mut arg).collect();
            let rets: Vec<String> = s.returns.iter().map(&mut arg).collect();
            format!("({}) -> ({})", args.join(", "), rets.join(", "))
        };
        let (sa, sb) = (schema(x, &mut self.a_render), schema(y, &mut self.b_render));
        if sa != sb {
            self.changed("bytecode", format!("{path}: schema"), sa, sb);
        }
    }

    fn bytecode(&mut self, a: &MobileModule, b: &MobileModule) {
        for (what, x, y) in [
            ("bytecode_version", a.bytecode_version, b.bytecode_version),
            ("operator_version", a.operator_version, b.operator_version),
        ] {
            if x != y {
                self.changed("bytecode", what, x.to_string(), y.to_string());
            }
        }
        let funcs = |m: &MobileModule| -> BTreeMap<String, Arc<BytecodeFunction>> {
            m.functions
                .iter()
                .map(|f| (f.qualified_name.to_string(), f.clone()))
                .collect()
        };
        let (fa, fb) = (funcs(a), funcs(b));
        for (n, f) in &fa {
            match fb.get(n) {
                None => self.push("bytecode", n, ChangeKind::Removed, None, None),
                Some(g) => self.function(n, f, g),
            }
        }
        for n in fb.keys() {
            if !fa.contains_key(n) {
                self.push("bytecode", n, ChangeKind::Added, None, None);
            }
        }
        let methods = |m: &MobileModule| -> String {
            let v: Vec<String> = m
                .methods
                .iter()
                .map(|f| f.qualified_name.to_string())
                .collect();
            v.join(", ")
        };
        let (ma, mb) = (methods(a), methods(b));
        if ma != mb {
            self.changed("bytecode", "methods", ma, mb);
        }
    }
}

/// The top-level blocks of a code file: each starts at a line in column 0 (`class`,
/// `def`, an import or a constant) and runs to the next such line.
fn definitions(text: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = Vec::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if !line.starts_with([' ', '\t', '\n']) {
            starts.push(pos);
        }
        pos += line.len();
    }
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let e = starts.get(k + 1).copied().unwrap_or(text.len());
        out.push(&text[s..e]);
    }
    out
}

/// Whether two code files hold the same definitions up to their order and a consistent
/// renaming of generated local names within each ([`ptconform_core::code::form::canonical`]).
fn same_up_to_form(a: &[&str], b: &[&str]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let canon = |d: &[&str]| {
        let mut v: Vec<String> = d
            .iter()
            .map(|t| ptconform_core::code::form::canonical(t))
            .collect();
        v.sort_unstable();
        v
    };
    canon(a) == canon(b)
}

fn sorted<'a>(v: &[&'a str]) -> Vec<&'a str> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

/// Largest number of seconds spent looking for the shortest line diff of one text; past
/// it `similar` settles for a longer (still correct) one, so two huge unrelated code
/// files cannot stall `diff`.
const TEXT_DIFF_SECONDS: u64 = 2;

/// A unified diff of two texts by lines (`---`/`+++` headers, `@@` hunks with
/// `context` lines around each change); empty when the texts are equal. The `similar`
/// crate does the work (Myers' algorithm, GNU diff's hunk format).
pub fn unified_diff(a: &str, b: &str, a_name: &str, b_name: &str, context: usize) -> String {
    if a == b {
        return String::new();
    }
    similar::TextDiff::configure()
        .timeout(std::time::Duration::from_secs(TEXT_DIFF_SECONDS))
        .diff_lines(a, b)
        .unified_diff()
        .context_radius(context)
        .header(a_name, b_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_diff_basic() {
        let a = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let b = "a\nb\nc\nD\ne\nf\ng\nh\nI\n";
        let d = unified_diff(a, b, "a/x", "b/x", 1);
        assert_eq!(
            d,
            "--- a/x\n+++ b/x\n@@ -3,3 +3,3 @@\n c\n-d\n+D\n e\n@@ -8 +8,2 @@\n h\n+I\n"
        );
        assert_eq!(unified_diff(a, a, "a", "b", 3), "");
    }

    #[test]
    fn unified_diff_shows_a_missing_final_newline() {
        let d = unified_diff("x\ny\n", "x\ny", "a", "b", 3);
        assert!(d.starts_with("--- a\n+++ b\n@@ -1,2 +1,2 @@\n"), "{d}");
        assert!(d.contains("No newline at end of file"), "{d}");
    }

    #[test]
    fn unified_diff_insert_into_empty() {
        let d = unified_diff("", "x\ny\n", "a", "b", 3);
        assert_eq!(d, "--- a\n+++ b\n@@ -0,0 +1,2 @@\n+x\n+y\n");
    }
}

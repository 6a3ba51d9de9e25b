//! `dump`: a deterministic, human-readable layout of an archive, for snapshot tests and
//! for people reading a file byte by byte.
//!
//! * zip archive: every record (local header and data offsets, the data's alignment,
//!   stored/deflated, sizes, CRC-32), then each record's content: `.pkl` records as a
//!   `pickletools.dis`-like disassembly (byte offsets, memo ids, storages resolved),
//!   `code/` texts, `version`, `byteorder`, `.data/serialization_id`;
//! * mobile flatbuffer: every `Module` field, the ivalues by index (kind and
//!   references), object types, functions with their instructions, operators and
//!   schema, storages with size and alignment, extra files and `jit_sources`.
//!
//! Byte runs over [`INLINE_LIMIT`] bytes (storages, long strings, extra files,
//! `.debug_pkl` records: those always) are shown as size + sha256, never raw.
//!
//! Nothing here trusts the input: a file that cannot be parsed as a container is an
//! error; a record or field that is damaged is marked in the text (`!! ...`) and
//! reported in [`Dump::problems`].

use std::collections::HashMap;
use std::fmt::Write;

use bytes::Bytes;

use ptconform_core::error::{Error, FormatError, Result, rules};
use ptconform_core::flatbuffer::generated::mobile_bytecode as fb;
use ptconform_core::flatbuffer::{is_flatbuffer, support};
use ptconform_core::inspect::sha256_hex;
use ptconform_core::model::ScalarType;
use ptconform_core::model::bytecode::OpCode;
use ptconform_core::pickle::PickleErrorKind;
use ptconform_core::pickle::opcodes as op;
use ptconform_core::pickle::ops::{self, Arg};
use ptconform_core::zip_archive::ZipArchiveReader;
use ptconform_core::zip_archive::read::{Method, Record};

/// Byte runs longer than this are summarized as size + sha256.
pub const INLINE_LIMIT: usize = 64;

/// The largest alignment reported: PyTorch aligns record data to 64 bytes.
pub const MAX_ALIGN: u64 = 64;

/// A dump and the problems found while making it.
#[derive(Clone, Debug)]
pub struct Dump {
    pub text: String,
    /// Damaged records or fields (each also marked `!!` in `text`), in text order.
    pub problems: Vec<FormatError>,
}

/// The dump of a zip archive or mobile flatbuffer (detected from the bytes as PyTorch
/// does). Any damage is an error: the first problem found.
pub fn dump(bytes: &[u8]) -> Result<String> {
    let d = dump_report(bytes)?;
    match d.problems.into_iter().next() {
        Some(p) => Err(Error::Format(p)),
        None => Ok(d.text),
    }
}

/// Like [`dump`], but a damaged record or field does not stop the dump: it is marked in
/// the text and listed in `problems`. Only a container that cannot be read at all (not a
/// zip, a flatbuffer that does not verify) is an error.
pub fn dump_report(bytes: &[u8]) -> Result<Dump> {
    if is_flatbuffer(bytes) {
        dump_flatbuffer(bytes)
    } else {
        dump_zip(bytes)
    }
}

/// Largest power of two dividing `offset`, capped at [`MAX_ALIGN`] (0 counts as aligned).
pub fn alignment(offset: u64) -> u64 {
    if offset == 0 {
        MAX_ALIGN
    } else {
        (1u64 << offset.trailing_zeros().min(63)).min(MAX_ALIGN)
    }
}

/// `"text"` (Rust string escapes) for short UTF-8, `b"..."` for other short bytes,
/// `<N bytes sha256 H>` for anything over [`INLINE_LIMIT`].
pub fn show_bytes(data: &[u8]) -> String {
    if data.len() > INLINE_LIMIT {
        return summary(data);
    }
    match std::str::from_utf8(data) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("b\"{}\"", data.escape_ascii()),
    }
}

/// `<N bytes sha256 H>`.
pub fn summary(data: &[u8]) -> String {
    format!("<{} bytes sha256 {}>", data.len(), sha256_hex(data))
}

fn hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() * 3);
    for (i, b) in data.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Raw bytes (storages): hex when short, else the summary.
fn show_raw(data: &[u8]) -> String {
    if data.is_empty() {
        "<0 bytes>".to_string()
    } else if data.len() > INLINE_LIMIT {
        summary(data)
    } else {
        format!("<{} bytes: {}>", data.len(), hex(data))
    }
}

fn show_text_block(out: &mut String, text: &str) {
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, true),
            None => (line, false),
        };
        let _ = writeln!(
            out,
            "    | {body}{}",
            if nl { "" } else { "  (no newline)" }
        );
    }
}

// ---------------------------------------------------------------------------------------
// Zip archives
// ---------------------------------------------------------------------------------------

fn method_name(m: Method) -> String {
    match m {
        Method::Stored => "stored".into(),
        Method::Deflated => "deflated".into(),
        Method::Other(n) => format!("method {n}"),
    }
}

fn dump_zip(bytes: &[u8]) -> Result<Dump> {
    let archive = ZipArchiveReader::from_bytes(Bytes::copy_from_slice(bytes))?;
    let mut out = String::new();
    let mut problems = Vec::new();
    let records = archive.records();
    let _ = writeln!(out, "format: zip");
    let _ = writeln!(out, "file size: {}", bytes.len());
    let _ = writeln!(out, "prefix: {:?}", archive.prefix());
    match archive.version() {
        Ok((v, name)) => {
            let _ = writeln!(out, "version: {v} (record {name})");
        }
        Err(e) => {
            let _ = writeln!(out, "version: !! {}", e.message);
            problems.push(e);
        }
    }
    for (label, name) in [
        ("byteorder", "byteorder"),
        ("serialization_id", ".data/serialization_id"),
    ] {
        match archive.record(name) {
            None => {
                let _ = writeln!(out, "{label}: (absent)");
            }
            Some(rec) => match archive.read_record(rec, false) {
                Ok(d) => {
                    let _ = writeln!(out, "{label}: {}", show_bytes(&d));
                }
                Err(e) => {
                    let _ = writeln!(out, "{label}: !! {}", e.message);
                }
            },
        }
    }

    let _ = writeln!(out, "\nrecords ({}):", records.len());
    let width = records.len().saturating_sub(1).to_string().len();
    for (i, r) in records.iter().enumerate() {
        let sizes = match r.method {
            Method::Stored => format!("stored   size {}", r.size),
            m => format!(
                "{} size {} compressed {}",
                method_name(m),
                r.size,
                r.compressed_size
            ),
        };
        let _ = writeln!(
            out,
            "  #{i:<width$} header {} data {} (lfh {}, align {}) {sizes} crc32 {:08x} flags {:#06x}  {}",
            r.header_offset,
            r.data_offset,
            r.data_offset.saturating_sub(r.header_offset),
            alignment(r.data_offset),
            r.crc32,
            r.flags,
            show_name(r),
        );
    }

    for r in records {
        let _ = writeln!(out);
        dump_record(&archive, r, &mut out, &mut problems);
    }
    Ok(Dump {
        text: out,
        problems,
    })
}

fn show_name(r: &Record) -> String {
    if r.full_name
        .chars()
        .all(|c| !c.is_control() && c != '"' && c != '\\')
    {
        r.full_name.clone()
    } else {
        format!("{:?}", r.full_name)
    }
}

fn dump_record(
    archive: &ZipArchiveReader,
    r: &Record,
    out: &mut String,
    problems: &mut Vec<FormatError>,
) {
    let data = match archive.read_record(r, false) {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(out, "== {}\n  !! {}", show_name(r), e.message);
            problems.push(e);
            return;
        }
    };
    let crc = crc32fast::hash(&data);
    let crc_note = if crc == r.crc32 {
        String::new()
    } else {
        let e = FormatError::new(
            rules::ZIP_CRC,
            r.full_name.clone(),
            Some(r.data_offset),
            format!("CRC-32 is {crc:08x} but the directory says {:08x}", r.crc32),
        );
        let note = format!("\n  !! {}", e.message);
        problems.push(e);
        note
    };
    let Some(name) = r.name() else {
        let _ = writeln!(
            out,
            "== {} (outside the prefix folder: ignored by loaders){crc_note}\n  {}",
            show_name(r),
            show_bytes(&data)
        );
        return;
    };
    if let Some(extra) = name.strip_prefix("extra/") {
        // Whatever its name (`data.pkl`, `x.debug_pkl`): user bytes, not a pickle.
        let _ = writeln!(
            out,
            "== {} (extra file {}){crc_note}\n  {}",
            show_name(r),
            show_bytes(extra.as_bytes()),
            show_bytes(&data)
        );
    } else if name.ends_with(".debug_pkl") {
        let _ = writeln!(
            out,
            "== {} (debug pickle){crc_note}\n  {}",
            show_name(r),
            summary(&data)
        );
    } else if name.ends_with(".pkl") {
        let _ = writeln!(
            out,
            "== {} (pickle, {} bytes){crc_note}",
            show_name(r),
            data.len()
        );
        let storage_dir = match name {
            "data.pkl" => "data",
            "traced_inputs.pkl" => "traced_inputs",
            // constants.pkl, and a mobile zip's bytecode.pkl (which names the constants).
            _ => "constants",
        };
        disassemble(archive, &data, storage_dir, r, out, problems);
    } else if name.starts_with("code/") && name.ends_with(".py") {
        let _ = writeln!(
            out,
            "== {} (code, {} bytes){crc_note}",
            show_name(r),
            data.len()
        );
        match ptconform_core::code::source_text(&r.full_name, &data) {
            Ok(t) => show_text_block(out, t),
            Err(e) => {
                let _ = writeln!(out, "  !! {}\n  {}", e.message, show_bytes(&data));
                problems.push(e);
            }
        }
    } else if name.starts_with("data/") || name.starts_with("constants/") {
        let _ = writeln!(
            out,
            "== {} (storage){crc_note}\n  {}",
            show_name(r),
            show_raw(&data)
        );
    } else {
        let kind = match name {
            "version" | ".data/version" => "version",
            "byteorder" => "byteorder",
            ".data/serialization_id" => "serialization id",
            _ => "other",
        };
        let _ = writeln!(
            out,
            "== {} ({kind}){crc_note}\n  {}",
            show_name(r),
            show_bytes(&data)
        );
    }
}

/// What the disassembler knows about a stack item (enough to resolve persistent ids).
/// Strings and tuples are shared, not copied: a memoized string fetched by a million
/// `BINGET`s costs a million pointers, not a million copies.
#[derive(Clone, Debug)]
enum Sym {
    Mark,
    Str(std::sync::Arc<[u8]>),
    Int(i64),
    Global(String),
    Tuple(std::sync::Arc<[Sym]>),
    Other,
}

fn pop_to_mark(stack: &mut Vec<Sym>) -> Vec<Sym> {
    match stack.iter().rposition(|s| matches!(s, Sym::Mark)) {
        Some(i) => {
            let items = stack.split_off(i + 1);
            stack.pop();
            items
        }
        None => std::mem::take(stack),
    }
}

fn pop_n(stack: &mut Vec<Sym>, n: usize) -> Vec<Sym> {
    let at = stack.len().saturating_sub(n);
    stack.split_off(at)
}

fn sym_short(s: &Sym) -> String {
    match s {
        Sym::Str(b) => show_bytes(b),
        Sym::Global(g) => format!("global {g}"),
        Sym::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

/// `storage data/0 float numel 6 cpu (record 24 bytes)` for a persistent id tuple.
fn describe_persid(archive: &ZipArchiveReader, dir: &str, pid: &Sym) -> String {
    let Sym::Tuple(items) = pid else {
        return "persistent id is not a tuple".into();
    };
    match &items[..] {
        [
            Sym::Str(tag),
            Sym::Global(g),
            Sym::Str(key),
            Sym::Str(loc),
            Sym::Int(numel),
        ] if &tag[..] == b"storage" => {
            let key = String::from_utf8_lossy(key);
            let class = g.strip_prefix("torch ").unwrap_or(g);
            let dtype = ScalarType::from_storage_name(class)
                .map(|t| t.name().to_string())
                .unwrap_or_else(|| format!("?{class}"));
            let record = format!("{dir}/{key}");
            let rec = match archive.record(&record) {
                Some(r) => format!("record {} bytes", r.size),
                None => "record missing".to_string(),
            };
            format!(
                "storage {record} {dtype} numel {numel} {} ({rec})",
                String::from_utf8_lossy(loc)
            )
        }
        _ => format!(
            "persistent id ({})",
            items.iter().map(sym_short).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A `pickletools.dis`-like listing: `offset: OPCODE argument`, indented by MARK depth,
/// memo ids on BINPUT/BINGET, persistent ids resolved to their storage records.
fn disassemble(
    archive: &ZipArchiveReader,
    data: &[u8],
    storage_dir: &str,
    r: &Record,
    out: &mut String,
    problems: &mut Vec<FormatError>,
) {
    let mut stack: Vec<Sym> = Vec::new();
    // Each memo entry with its short description, made once (a long string's summary
    // hashes it; a file may fetch it a million times).
    let mut memo: HashMap<u64, (Sym, String)> = HashMap::new();
    let width = data.len().to_string().len().max(4);
    let mut fail = |out: &mut String, at: usize, msg: String| {
        let _ = writeln!(out, "  {at:>width$}: !! {msg}");
        problems.push(FormatError::new(
            rules::PICKLE_OPCODE,
            r.full_name.clone(),
            Some(at as u64),
            msg,
        ));
    };
    let mut walk = ops::ops(data);
    while let Some(next) = walk.next() {
        let o = match next {
            Ok(o) => o,
            Err(e) => {
                let at = e.offset as usize;
                let msg = match e.kind {
                    PickleErrorKind::NoStop => "pickle ends without STOP".to_string(),
                    PickleErrorKind::ForeignOpcode(n) => format!(
                        "opcode {n} ({:#04x}) is not in the TorchScript dialect",
                        data[at]
                    ),
                    PickleErrorKind::UnknownOpcode(c) => format!("unknown opcode {c:#04x}"),
                    kind => format!("{}: {kind}", op::name(data[at]).unwrap_or("?")),
                };
                return fail(out, at, msg);
            }
        };
        let code = o.code;
        let depth = stack.iter().filter(|s| matches!(s, Sym::Mark)).count();
        let name = op::name(code).unwrap_or("?");
        let arg: String = match (code, o.arg) {
            (_, Arg::Proto(v)) => v.to_string(),
            (_, Arg::Global { module, name }) => {
                let g = format!(
                    "{} {}",
                    String::from_utf8_lossy(module),
                    String::from_utf8_lossy(name)
                );
                let shown = format!("{g:?}");
                stack.push(Sym::Global(g));
                shown
            }
            (op::BINPUT | op::LONG_BINPUT, Arg::Memo(id)) => {
                let id = u64::from(id);
                let v = stack.last().cloned().unwrap_or(Sym::Other);
                let short = sym_short(&v);
                memo.insert(id, (v, short));
                format!("memo {id}")
            }
            (_, Arg::Memo(id)) => {
                let id = u64::from(id);
                match memo.get(&id) {
                    Some((v, short)) => {
                        stack.push(v.clone());
                        if short.is_empty() {
                            format!("memo {id}")
                        } else {
                            format!("memo {id} = {short}")
                        }
                    }
                    None => {
                        stack.push(Sym::Other);
                        format!("memo {id} (never stored)")
                    }
                }
            }
            (_, Arg::Str(s)) => {
                stack.push(Sym::Str(s.into()));
                show_bytes(s)
            }
            (_, Arg::Int(v)) => {
                stack.push(Sym::Int(v));
                v.to_string()
            }
            (_, Arg::Long(b)) => {
                let n = b.len();
                if n <= 8 && n > 0 {
                    let fill = if b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
                    let mut w = [fill; 8];
                    w[..n].copy_from_slice(b);
                    let v = i64::from_le_bytes(w);
                    stack.push(Sym::Int(v));
                    format!("{v} ({n} bytes)")
                } else {
                    stack.push(Sym::Other);
                    format!("<{n} bytes: {}>", hex(b))
                }
            }
            (_, Arg::Float(v)) => {
                stack.push(Sym::Other);
                format!("{v:?}")
            }
            (op::MARK, _) => {
                stack.push(Sym::Mark);
                String::new()
            }
            (op::EMPTY_TUPLE, _) => {
                stack.push(Sym::Tuple(Vec::new().into()));
                String::new()
            }
            (op::TUPLE1 | op::TUPLE2 | op::TUPLE3, _) => {
                let n = (code - op::TUPLE1 + 1) as usize;
                let items = pop_n(&mut stack, n);
                stack.push(Sym::Tuple(items.into()));
                String::new()
            }
            (op::TUPLE, _) => {
                let items = pop_to_mark(&mut stack);
                stack.push(Sym::Tuple(items.into()));
                String::new()
            }
            (op::LIST | op::DICT, _) => {
                pop_to_mark(&mut stack);
                stack.push(Sym::Other);
                String::new()
            }
            (op::EMPTY_LIST | op::EMPTY_DICT | op::NEWTRUE | op::NEWFALSE | op::NONE, _) => {
                stack.push(Sym::Other);
                String::new()
            }
            (op::APPEND | op::BUILD, _) => {
                stack.pop();
                String::new()
            }
            (op::SETITEM, _) => {
                pop_n(&mut stack, 2);
                String::new()
            }
            (op::APPENDS | op::SETITEMS, _) => {
                pop_to_mark(&mut stack);
                String::new()
            }
            (op::NEWOBJ | op::REDUCE, _) => {
                let args = pop_n(&mut stack, 2);
                stack.push(Sym::Other);
                match args.first() {
                    Some(Sym::Global(g)) => format!("({g})"),
                    _ => String::new(),
                }
            }
            (op::BINPERSID, _) => {
                let pid = stack.pop().unwrap_or(Sym::Other);
                stack.push(Sym::Other);
                describe_persid(archive, storage_dir, &pid)
            }
            // STOP (the decoder yields no other argument-less opcode).
            _ => String::new(),
        };
        let indent = "  ".repeat(depth.min(32));
        let line = if arg.is_empty() {
            format!("{indent}{name}")
        } else {
            format!("{indent}{name:<12} {arg}")
        };
        let _ = writeln!(out, "  {:>width$}: {}", o.offset, line.trim_end());
        if code == op::STOP {
            let end = walk.position();
            if end < data.len() {
                fail(out, end, format!("{} bytes after STOP", data.len() - end));
            }
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Mobile flatbuffers
// ---------------------------------------------------------------------------------------

struct Fb<'a> {
    buf: &'a [u8],
    n_ivalues: usize,
    n_types: usize,
    n_storages: usize,
    type_names: Vec<String>,
    attr_names: Vec<Vec<String>>,
    problems: Vec<FormatError>,
}

impl Fb<'_> {
    /// `#N`, marking (and reporting) an index outside `Module.ivalues`.
    fn iv(&mut self, field: &str, i: u32) -> String {
        if (i as usize) < self.n_ivalues {
            format!("#{i}")
        } else {
            self.bad(field, format!("ivalue index {i} is out of range"));
            format!("#{i} !!out of range")
        }
    }

    fn ivs(&mut self, field: &str, v: Option<flatbuffers::Vector<'_, u32>>) -> String {
        let items: Vec<String> = v
            .map(|v| {
                v.iter()
                    .enumerate()
                    .map(|(k, i)| self.iv(&format!("{field}[{k}]"), i))
                    .collect()
            })
            .unwrap_or_default();
        format!("[{}]", items.join(", "))
    }

    fn type_ref(&mut self, field: &str, i: u32) -> String {
        match self.type_names.get(i as usize) {
            Some(n) => format!("type #{i} ({n})"),
            None => {
                let n = self.n_types;
                self.bad(
                    field,
                    format!("object type index {i} is out of range ({n} types)"),
                );
                format!("type #{i} !!out of range")
            }
        }
    }

    fn bad(&mut self, field: &str, msg: String) {
        self.problems
            .push(ptconform_core::flatbuffer::read::field_error(field, msg));
    }

    fn offset_of(&self, s: &[u8]) -> usize {
        (s.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize)
    }

    fn tensor(&mut self, field: &str, t: &fb::TensorMetadata<'_>) -> String {
        let st = t.storage_location_index();
        let storage = if (st as usize) < self.n_storages {
            format!("storage #{st}")
        } else {
            let n = self.n_storages;
            self.bad(
                &format!("{field}.storage_location_index"),
                format!("storage index {st} is out of range ({n} storages)"),
            );
            format!("storage #{st} !!out of range")
        };
        let dtype = ScalarType::from_number(i64::from(t.scalar_type()))
            .map(|d| d.name().to_string())
            .unwrap_or_else(|| format!("scalar_type {}", t.scalar_type()));
        let list = |v: Option<flatbuffers::Vector<'_, i32>>| {
            let items: Vec<String> = v
                .map(|v| v.iter().map(|x| x.to_string()).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        };
        let mut s = format!(
            "Tensor {storage} {dtype} offset {} sizes {} strides {}",
            t.storage_offset(),
            list(t.sizes()),
            list(t.strides())
        );
        if t.requires_grad() {
            s.push_str(" requires_grad");
        }
        if let Some(q) = t.quantized_schema() {
            let scheme = ptconform_core::model::QScheme::ALL
                .iter()
                .find(|s| **s as i8 == q.qscheme())
                .map(|s| s.name().to_string())
                .unwrap_or_else(|| format!("qscheme {}", q.qscheme()));
            let _ = write!(
                s,
                " quantized {scheme} scale {:?} zero_point {} axis {}",
                q.scale(),
                q.zero_point(),
                q.axis()
            );
            if let Some(sc) = q.scales() {
                let inner = self.tensor(&format!("{field}.quantized_schema.scales"), &sc);
                let _ = write!(s, " scales {{{inner}}}");
            }
            if let Some(zp) = q.zero_points() {
                let inner = self.tensor(&format!("{field}.quantized_schema.zero_points"), &zp);
                let _ = write!(s, " zero_points {{{inner}}}");
            }
        }
        s
    }

    fn ivalue(&mut self, k: usize, iv: &fb::IValue<'_>) -> String {
        use fb::IValueUnion as U;
        let field = format!("Module.ivalues[{k}]");
        if let Err(e) = support::check_ivalue_union(self.buf, iv) {
            self.bad(&field, e.clone());
            return format!("!! {e}");
        }
        let tag = iv.val_type();
        let missing = |what: &str| format!("{what} !!table missing");
        match tag {
            U::NONE => "None".into(),
            U::Int => match support::read_int(iv) {
                Some(v) => format!("Int {v}"),
                None => missing("Int"),
            },
            U::Bool => match support::read_bool(iv) {
                Some(v) => format!("Bool {v}"),
                None => missing("Bool"),
            },
            U::Double => match support::read_double(iv) {
                Some(v) => format!("Double {v:?}"),
                None => missing("Double"),
            },
            U::ComplexDouble => match support::read_complex(iv) {
                Some((re, im)) => format!("ComplexDouble ({re:?}, {im:?})"),
                None => missing("ComplexDouble"),
            },
            U::TensorMetadata => match iv.val_as_tensor_metadata() {
                Some(t) => self.tensor(&format!("{field}.TensorMetadata"), &t),
                None => missing("TensorMetadata"),
            },
            U::String => match iv.val_as_string() {
                Some(s) => format!("String {}", show_bytes(s.data().unwrap_or("").as_bytes())),
                None => missing("String"),
            },
            U::List => match iv.val_as_list() {
                Some(l) => {
                    let items = self.ivs(&format!("{field}.List.items"), l.items());
                    format!(
                        "List {} items {items}",
                        show_bytes(l.annotation_str().unwrap_or("").as_bytes())
                    )
                }
                None => missing("List"),
            },
            U::Tuple => match iv.val_as_tuple() {
                Some(t) => format!(
                    "Tuple items {}",
                    self.ivs(&format!("{field}.Tuple.items"), t.items())
                ),
                None => missing("Tuple"),
            },
            U::Dict => match iv.val_as_dict() {
                Some(d) => {
                    let keys = self.ivs(&format!("{field}.Dict.keys"), d.keys());
                    let values = self.ivs(&format!("{field}.Dict.values"), d.values());
                    format!(
                        "Dict {} keys {keys} values {values}",
                        show_bytes(d.annotation_str().unwrap_or("").as_bytes())
                    )
                }
                None => missing("Dict"),
            },
            U::Object => match iv.val_as_object() {
                Some(o) => self.object(&field, &o),
                None => missing("Object"),
            },
            U::IntList => match iv.val_as_int_list() {
                Some(l) => {
                    let items: Vec<String> = l
                        .items()
                        .map(|v| {
                            v.iter()
                                .map(|b| support::bytes8_i64(b).to_string())
                                .collect()
                        })
                        .unwrap_or_default();
                    format!("IntList [{}]", items.join(", "))
                }
                None => missing("IntList"),
            },
            U::DoubleList => match iv.val_as_double_list() {
                Some(l) => {
                    let items: Vec<String> = l
                        .items()
                        .map(|v| {
                            v.iter()
                                .map(|b| format!("{:?}", support::bytes8_f64(b)))
                                .collect()
                        })
                        .unwrap_or_default();
                    format!("DoubleList [{}]", items.join(", "))
                }
                None => missing("DoubleList"),
            },
            U::BoolList => match iv.val_as_bool_list() {
                Some(l) => {
                    // Raw bytes: a byte other than 0/1 is shown as is, not as a bool.
                    let items: Vec<String> = l
                        .items()
                        .map(|v| {
                            v.bytes()
                                .iter()
                                .map(|b| match b {
                                    0 => "false".to_string(),
                                    1 => "true".to_string(),
                                    b => format!("byte {b}"),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    format!("BoolList [{}]", items.join(", "))
                }
                None => missing("BoolList"),
            },
            U::Device => match iv.val_as_device() {
                Some(d) => format!("Device {}", show_bytes(d.str().unwrap_or("").as_bytes())),
                None => missing("Device"),
            },
            U::EnumValue => match iv.val_as_enum_value() {
                Some(e) => {
                    let v = self.iv(&format!("{field}.EnumValue.value"), e.value());
                    format!(
                        "EnumValue {} value {v}",
                        show_bytes(e.type_name().unwrap_or("").as_bytes())
                    )
                }
                None => missing("EnumValue"),
            },
            U::Function => match iv.val_as_function() {
                Some(f) => format!(
                    "Function {} (see functions)",
                    show_bytes(f.qn().unwrap_or("").as_bytes())
                ),
                None => missing("Function"),
            },
            other => format!("!! unknown tag {}", other.0),
        }
    }

    fn object(&mut self, field: &str, o: &fb::Object<'_>) -> String {
        let ty = self.type_ref(&format!("{field}.Object.type_index"), o.type_index());
        let mut s = format!("Object {ty}");
        if o.state() != 0 {
            let st = self.iv(&format!("{field}.Object.state"), o.state());
            let _ = write!(s, " state {st}");
        }
        if o.setstate_func() != 0 {
            let f = self.iv(&format!("{field}.Object.setstate_func"), o.setstate_func());
            let _ = write!(s, " setstate_func {f}");
        }
        if let Some(attrs) = o.attrs() {
            let names = self
                .attr_names
                .get(o.type_index() as usize)
                .cloned()
                .unwrap_or_default();
            let mut parts = Vec::new();
            for (k, a) in attrs.iter().enumerate() {
                let r = self.iv(&format!("{field}.Object.attrs[{k}]"), a);
                match names.get(k) {
                    Some(n) => parts.push(format!("{n}={r}")),
                    None => parts.push(format!("?{k}={r}")),
                }
            }
            let _ = write!(s, " attrs {{{}}}", parts.join(", "));
        }
        s
    }

    fn function(&mut self, out: &mut String, k: usize, f: &fb::Function<'_>) {
        let field = format!("Module.ivalues[{k}].Function");
        let _ = writeln!(
            out,
            "  #{k} {}",
            show_bytes(f.qn().unwrap_or("").as_bytes())
        );
        let ct = self.type_ref(&format!("{field}.class_type"), f.class_type());
        let _ = writeln!(out, "    class_type: {ct}");
        let _ = writeln!(out, "    register_size: {}", f.register_size());
        if let Some(schema) = f.schema() {
            let _ = writeln!(out, "    schema:");
            for (label, args) in [("arg", schema.arguments()), ("return", schema.returns())] {
                for (j, a) in args.iter().flat_map(|v| v.iter()).enumerate() {
                    let mut line = format!(
                        "      {label} {}: {}",
                        show_bytes(a.name().unwrap_or("").as_bytes()),
                        a.type_().unwrap_or("")
                    );
                    if a.default_value() != 0 {
                        let d = self.iv(
                            &format!("{field}.schema.{label}[{j}].default_value"),
                            a.default_value(),
                        );
                        let _ = write!(line, " = {d}");
                    }
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        let handles: Vec<i64> = f
            .debug_info()
            .and_then(|d| d.debug_handle())
            .map(|v| v.iter().map(support::bytes8_i64).collect())
            .unwrap_or_default();
        let instructions: Vec<fb::Instruction> = f
            .instructions()
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        let _ = writeln!(out, "    instructions ({}):", instructions.len());
        let w = instructions.len().saturating_sub(1).to_string().len();
        for (j, ins) in instructions.iter().enumerate() {
            let name = OpCode::from_number(i64::from(ins.op()))
                .map(|o| o.name().to_string())
                .unwrap_or_else(|| {
                    self.bad(
                        &format!("{field}.instructions[{j}].op"),
                        format!("unknown opcode {}", ins.op()),
                    );
                    format!("!!op {}", ins.op())
                });
            let debug = handles
                .get(j)
                .map(|h| format!("  debug {h}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "      {j:>w$}  {name:<16} N {:<3} X {}{debug}",
                ins.n(),
                ins.x()
            );
        }
        if handles.len() != instructions.len() && !handles.is_empty() {
            let _ = writeln!(
                out,
                "      ({} debug handles for {} instructions)",
                handles.len(),
                instructions.len()
            );
        }
        let ops: Vec<fb::Operator> = f
            .operators()
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let _ = writeln!(out, "    operators ({}):", ops.len());
        for (j, o) in ops.iter().enumerate() {
            let n = o.num_args_serialized();
            let _ = writeln!(
                out,
                "      {j}  {} overload {} num_args {}",
                o.name().unwrap_or(""),
                show_bytes(o.overload_name().unwrap_or("").as_bytes()),
                if n == -1 {
                    "-1 (default)".to_string()
                } else {
                    n.to_string()
                }
            );
        }
        let consts = self.ivs(&format!("{field}.constants"), f.constants());
        let _ = writeln!(out, "    constants: {consts}");
        let anns: Vec<String> = f
            .type_annotations()
            .map(|v| v.iter().map(|s| show_bytes(s.as_bytes())).collect())
            .unwrap_or_default();
        let _ = writeln!(out, "    type_annotations: [{}]", anns.join(", "));
    }
}

fn dump_flatbuffer(bytes: &[u8]) -> Result<Dump> {
    let m = ptconform_core::flatbuffer::read::verified_module(bytes)?;
    let ivalues: Vec<fb::IValue> = m.ivalues().map(|v| v.iter().collect()).unwrap_or_default();
    let types: Vec<fb::ObjectType> = m
        .object_types()
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let storages: Vec<fb::StorageData> = m
        .storage_data()
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let mut fb = Fb {
        buf: bytes,
        n_ivalues: ivalues.len(),
        n_types: types.len(),
        n_storages: storages.len(),
        type_names: types
            .iter()
            .map(|t| t.type_name().unwrap_or("").to_string())
            .collect(),
        attr_names: types
            .iter()
            .map(|t| {
                t.attr_names()
                    .map(|v| v.iter().map(str::to_string).collect())
                    .unwrap_or_default()
            })
            .collect(),
        problems: Vec::new(),
    };
    let mut out = String::new();
    let root = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    let _ = writeln!(out, "format: flatbuffer (PTMF)");
    let _ = writeln!(out, "file size: {}", bytes.len());
    let _ = writeln!(out, "root table offset: {root}");
    let _ = writeln!(out, "\nModule:");
    let _ = writeln!(out, "  bytecode_version: {}", m.bytecode_version());
    let _ = writeln!(out, "  operator_version: {}", m.operator_version());
    let _ = writeln!(out, "  mobile_ivalue_size: {}", m.mobile_ivalue_size());
    if m.mobile_ivalue_size() as usize > ivalues.len() {
        fb.bad(
            "Module.mobile_ivalue_size",
            format!(
                "{} is larger than the {} ivalues",
                m.mobile_ivalue_size(),
                ivalues.len()
            ),
        );
    }
    let state = fb.iv("Module.state_obj", m.state_obj());
    let _ = writeln!(out, "  state_obj: {state}");
    let methods = fb.ivs("Module.methods", m.methods());
    let _ = writeln!(out, "  methods: {methods}");
    let consts = fb.ivs("Module.jit_constants", m.jit_constants());
    let _ = writeln!(out, "  jit_constants: {consts}");
    let _ = writeln!(out, "  storage_data_size: {}", m.storage_data_size());
    if m.storage_data_size() as i64 != storages.len() as i64 {
        fb.bad(
            "Module.storage_data_size",
            format!(
                "says {} but storage_data has {} entries",
                m.storage_data_size(),
                storages.len()
            ),
        );
    }
    let _ = writeln!(out, "  ivalues: {}", ivalues.len());
    let _ = writeln!(out, "  object_types: {}", types.len());
    let _ = writeln!(out, "  storage_data: {}", storages.len());
    let _ = writeln!(
        out,
        "  extra_files: {}",
        m.extra_files().map_or(0, |v| v.len())
    );
    let _ = writeln!(
        out,
        "  jit_sources: {}",
        m.jit_sources().map_or(0, |v| v.len())
    );

    let _ = writeln!(out, "\nobject_types ({}):", types.len());
    for (k, t) in types.iter().enumerate() {
        let kind = match t.type_().0 {
            0 => "UNSET".to_string(),
            1 => "CLASS_WITH_FIELD".to_string(),
            2 => "CUSTOM_CLASS".to_string(),
            3 => "CLASS_WITH_SETSTATE".to_string(),
            4 => "NON_OBJ".to_string(),
            n => {
                fb.bad(
                    &format!("Module.object_types[{k}].type"),
                    format!("unknown TypeType {n}"),
                );
                format!("!!TypeType {n}")
            }
        };
        let names = fb.attr_names[k].join(", ");
        let _ = writeln!(
            out,
            "  #{k} {} {kind} attrs [{names}]",
            show_bytes(t.type_name().unwrap_or("").as_bytes())
        );
    }

    let _ = writeln!(out, "\nivalues ({}):", ivalues.len());
    let w = ivalues.len().saturating_sub(1).to_string().len();
    for (k, iv) in ivalues.iter().enumerate() {
        let text = fb.ivalue(k, iv);
        let mark = if k == m.mobile_ivalue_size() as usize && k != 0 {
            "  -- mobile_ivalue_size --\n"
        } else {
            ""
        };
        let _ = write!(out, "{mark}");
        let _ = writeln!(out, "  #{k:<w$} {text}");
    }

    let _ = writeln!(out, "\nfunctions:");
    for (k, iv) in ivalues.iter().enumerate() {
        if iv.val_type() == fb::IValueUnion::Function
            && let Some(f) = iv.val_as_function()
        {
            fb.function(&mut out, k, &f);
        }
    }

    let _ = writeln!(out, "\nstorage_data ({}):", storages.len());
    for (k, s) in storages.iter().enumerate() {
        let data = s.data().map(|v| v.bytes()).unwrap_or(&[]);
        let off = fb.offset_of(data) as u64;
        let _ = writeln!(
            out,
            "  #{k} offset {off} (align {}) size {} {}",
            alignment(off),
            data.len(),
            show_raw(data)
        );
    }

    let files = |v: Option<
        flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<fb::ExtraFile<'_>>>,
    >|
     -> Vec<(String, Vec<u8>)> {
        v.map(|v| {
            v.iter()
                .map(|f| {
                    (
                        f.name().unwrap_or("").to_string(),
                        f.content().map(|c| c.bytes().to_vec()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let extra = files(m.extra_files());
    let _ = writeln!(out, "\nextra_files ({}):", extra.len());
    for (name, content) in &extra {
        let _ = writeln!(
            out,
            "  {}: {}",
            show_bytes(name.as_bytes()),
            show_bytes(content)
        );
    }
    let sources = files(m.jit_sources());
    let _ = writeln!(out, "\njit_sources ({}):", sources.len());
    for (name, content) in &sources {
        let _ = writeln!(
            out,
            "== {} ({} bytes)",
            show_bytes(name.as_bytes()),
            content.len()
        );
        match std::str::from_utf8(content) {
            Ok(t) => show_text_block(&mut out, t),
            Err(_) => {
                let _ = writeln!(out, "  !! not UTF-8: {}", show_bytes(content));
                fb.bad("Module.jit_sources", format!("{name:?} is not UTF-8"));
            }
        }
    }
    for p in &fb.problems {
        let _ = writeln!(out, "!! {}: {}", p.location.record, p.message);
    }
    Ok(Dump {
        text: out,
        problems: fb.problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_is_capped() {
        assert_eq!(alignment(0), 64);
        assert_eq!(alignment(128), 64);
        assert_eq!(alignment(96), 32);
        assert_eq!(alignment(7), 1);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for input in [
            &b""[..],
            b"PK",
            b"xxxxPTMFxxxx",
            b"PYTORCH1",
            &[0u8; 100][..],
        ] {
            assert!(dump(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn short_and_long_bytes() {
        assert_eq!(show_bytes(b"abc"), "\"abc\"");
        assert_eq!(show_bytes(b"\xff"), "b\"\\xff\"");
        assert!(show_bytes(&[b'a'; 65]).starts_with("<65 bytes sha256 "));
    }
}

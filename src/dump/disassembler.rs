//! The pickle disassembler: `pickletools.dis`-like, one line per opcode from the one
//! opcode decoder ([`ptconform_core::pickle::ops`]), memo ids and storages resolved.

use super::*;

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

/// The disassembler's stack, counting its MARKs as they come and go: the listing indents
/// each line by the MARK depth, and counting them per opcode was quadratic (5,000
/// tensors pushed under one MARK: 12.5 million visits).
#[derive(Default)]
struct Stack {
    items: Vec<Sym>,
    marks: usize,
}

impl Stack {
    fn push(&mut self, s: Sym) {
        self.marks += usize::from(matches!(s, Sym::Mark));
        self.items.push(s);
    }

    fn pop(&mut self) -> Option<Sym> {
        let s = self.items.pop();
        self.marks -= usize::from(matches!(s, Some(Sym::Mark)));
        s
    }

    fn last(&self) -> Option<&Sym> {
        self.items.last()
    }

    /// The items above the topmost MARK, which goes too (all items when there is none).
    fn pop_to_mark(&mut self) -> Vec<Sym> {
        match self.items.iter().rposition(|s| matches!(s, Sym::Mark)) {
            Some(i) => {
                let items = self.items.split_off(i + 1);
                self.pop();
                items
            }
            None => {
                self.marks = 0;
                std::mem::take(&mut self.items)
            }
        }
    }

    fn pop_n(&mut self, n: usize) -> Vec<Sym> {
        let at = self.items.len().saturating_sub(n);
        let items = self.items.split_off(at);
        self.marks -= items.iter().filter(|s| matches!(s, Sym::Mark)).count();
        items
    }
}

fn sym_short(s: &Sym) -> String {
    match s {
        Sym::Str(b) => show_bytes(b),
        Sym::Global(g) => format!("global {g}"),
        Sym::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

/// `storage data/0 float numel 6 cpu (record 24 bytes)` for a persistent id tuple,
/// appended to `out`.
fn describe_persid(archive: &ZipArchiveReader, dir: &str, pid: &Sym, out: &mut String) {
    let Sym::Tuple(items) = pid else {
        out.push_str("persistent id is not a tuple");
        return;
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
            let start = out.len();
            let _ = write!(out, "{dir}/{key}");
            let record = archive.record(&out[start..]).map(|r| r.size);
            out.push(' ');
            match ScalarType::from_storage_name(class) {
                Some(t) => out.push_str(t.name()),
                None => {
                    let _ = write!(out, "?{class}");
                }
            }
            let _ = write!(out, " numel {numel} {} (", String::from_utf8_lossy(loc));
            match record {
                Some(size) => {
                    let _ = write!(out, "record {size} bytes)");
                }
                None => out.push_str("record missing)"),
            }
            out.insert_str(start, "storage ");
        }
        _ => {
            let _ = write!(
                out,
                "persistent id ({})",
                items.iter().map(sym_short).collect::<Vec<_>>().join(", ")
            );
        }
    }
}

/// `n` right-aligned in `width` columns (`{n:>width$}`, which went through the
/// formatting machinery once per opcode).
fn right_aligned(out: &mut String, n: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n);
    for _ in digits.len()..width {
        out.push(' ');
    }
    out.push_str(digits);
}

/// A `pickletools.dis`-like listing: `offset: OPCODE argument`, indented by MARK depth,
/// memo ids on BINPUT/BINGET, persistent ids resolved to their storage records.
pub(super) fn disassemble(
    archive: &ZipArchiveReader,
    data: &[u8],
    storage_dir: &str,
    r: &Record,
    out: &mut String,
    problems: &mut Vec<FormatError>,
) {
    let mut stack = Stack::default();
    // Each memo entry with its short description, made once (a long string's summary
    // hashes it; a file may fetch it a million times).
    let mut memo: rustc_hash::FxHashMap<u64, (Sym, String)> = Default::default();
    let width = data.len().to_string().len().max(4);
    // The listing says it in the disassembler's words; the finding is the reader's own.
    let mut fail = |out: &mut String, at: usize, msg: String, finding: FormatError| {
        let _ = writeln!(out, "  {at:>width$}: !! {msg}");
        problems.push(finding);
    };
    let mut walk = ops::ops(data);
    let mut arg = String::new();
    while let Some(next) = walk.next() {
        let o = match next {
            Ok(o) => o,
            Err(e) => {
                let at = e.offset as usize;
                let finding = e.clone().in_record(&r.full_name);
                let msg = match e.kind {
                    PickleErrorKind::NoStop => "pickle ends without STOP".to_string(),
                    PickleErrorKind::ForeignOpcode(n) => format!(
                        "opcode {n} ({:#04x}) is not in the TorchScript dialect",
                        data[at]
                    ),
                    PickleErrorKind::UnknownOpcode(c) => format!("unknown opcode {c:#04x}"),
                    kind => format!("{}: {kind}", op::name(data[at]).unwrap_or("?")),
                };
                return fail(out, at, msg, finding);
            }
        };
        let code = o.code;
        let depth = stack.marks;
        let name = op::name(code).unwrap_or("?");
        // One argument buffer for the whole listing, written in place (an allocation or
        // three per opcode were most of the disassembler's time).
        arg.clear();
        match (code, o.arg) {
            (_, Arg::Proto(v)) => {
                let _ = write!(arg, "{v}");
            }
            (_, Arg::Global { module, name }) => {
                let g = format!(
                    "{} {}",
                    String::from_utf8_lossy(module),
                    String::from_utf8_lossy(name)
                );
                let _ = write!(arg, "{g:?}");
                stack.push(Sym::Global(g));
            }
            (op::BINPUT | op::LONG_BINPUT, Arg::Memo(id)) => {
                let id = u64::from(id);
                let v = stack.last().cloned().unwrap_or(Sym::Other);
                let short = sym_short(&v);
                memo.insert(id, (v, short));
                let _ = write!(arg, "memo {id}");
            }
            (_, Arg::Memo(id)) => {
                let id = u64::from(id);
                match memo.get(&id) {
                    Some((v, short)) => {
                        stack.push(v.clone());
                        let _ = write!(arg, "memo {id}");
                        if !short.is_empty() {
                            let _ = write!(arg, " = {short}");
                        }
                    }
                    None => {
                        stack.push(Sym::Other);
                        let _ = write!(arg, "memo {id} (never stored)");
                    }
                }
            }
            (_, Arg::Str(s)) => {
                stack.push(Sym::Str(s.into()));
                write_bytes(&mut arg, s);
            }
            (_, Arg::Int(v)) => {
                stack.push(Sym::Int(v));
                let _ = write!(arg, "{v}");
            }
            (_, Arg::Long(b)) => {
                let n = b.len();
                if n <= 8 && n > 0 {
                    let fill = if b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
                    let mut w = [fill; 8];
                    w[..n].copy_from_slice(b);
                    let v = i64::from_le_bytes(w);
                    stack.push(Sym::Int(v));
                    let _ = write!(arg, "{v} ({n} bytes)");
                } else {
                    stack.push(Sym::Other);
                    let _ = write!(arg, "<{n} bytes: {}>", hex(b));
                }
            }
            (_, Arg::Float(v)) => {
                stack.push(Sym::Other);
                let _ = write!(arg, "{v:?}");
            }
            (op::MARK, _) => stack.push(Sym::Mark),
            (op::EMPTY_TUPLE, _) => stack.push(Sym::Tuple(Vec::new().into())),
            (op::TUPLE1 | op::TUPLE2 | op::TUPLE3, _) => {
                let n = (code - op::TUPLE1 + 1) as usize;
                let items = stack.pop_n(n);
                stack.push(Sym::Tuple(items.into()));
            }
            (op::TUPLE, _) => {
                let items = stack.pop_to_mark();
                stack.push(Sym::Tuple(items.into()));
            }
            (op::LIST | op::DICT, _) => {
                stack.pop_to_mark();
                stack.push(Sym::Other);
            }
            (op::EMPTY_LIST | op::EMPTY_DICT | op::NEWTRUE | op::NEWFALSE | op::NONE, _) => {
                stack.push(Sym::Other)
            }
            (op::APPEND | op::BUILD, _) => {
                stack.pop();
            }
            (op::SETITEM, _) => {
                stack.pop_n(2);
            }
            (op::APPENDS | op::SETITEMS, _) => {
                stack.pop_to_mark();
            }
            (op::NEWOBJ | op::REDUCE, _) => {
                let args = stack.pop_n(2);
                stack.push(Sym::Other);
                if let Some(Sym::Global(g)) = args.first() {
                    let _ = write!(arg, "({g})");
                }
            }
            (op::BINPERSID, _) => {
                let pid = stack.pop().unwrap_or(Sym::Other);
                stack.push(Sym::Other);
                describe_persid(archive, storage_dir, &pid, &mut arg);
            }
            // STOP (the decoder yields no other argument-less opcode).
            _ => {}
        }
        out.push_str("  ");
        right_aligned(out, o.offset as u64, width);
        out.push_str(": ");
        for _ in 0..depth.min(32) {
            out.push_str("  ");
        }
        out.push_str(name);
        let shown = arg.trim_end();
        if !shown.is_empty() {
            // `{name:<12} {arg}`, without formatting machinery.
            for _ in name.len()..12 {
                out.push(' ');
            }
            out.push(' ');
            out.push_str(shown);
        }
        out.push('\n');
        if code == op::STOP {
            let end = walk.position();
            if end < data.len() {
                let finding = pickle::read::trailing_data(&r.full_name, end, data.len());
                fail(
                    out,
                    end,
                    format!("{} bytes after STOP", data.len() - end),
                    finding,
                );
            }
            return;
        }
    }
}

//! The one decoder of the dialect's opcodes and their arguments: the unpickler, `dump`'s
//! disassembler and the fuzzer's pickle mutator all walk a pickle through it, so an
//! opcode's argument layout, and what counts as truncated, is written down once.

use super::opcodes as op;
use super::read::{PickleError, PickleErrorKind};

/// An opcode's argument, borrowed from the pickle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg<'a> {
    /// Opcodes without an argument (MARK, TUPLE, STOP, ...).
    None,
    /// PROTO's protocol number.
    Proto(u8),
    /// A memo id (BINPUT, LONG_BINPUT, BINGET, LONG_BINGET).
    Memo(u32),
    /// BININT1 (unsigned), BININT2 (unsigned) or BININT (signed) as a value.
    Int(i64),
    /// LONG1's little-endian two's-complement bytes (any length; the reader takes 8).
    Long(&'a [u8]),
    /// BINFLOAT's double (stored big-endian, as Python's pickle does).
    Float(f64),
    /// BINUNICODE or BINUNICODE8 bytes, not yet checked to be UTF-8.
    Str(&'a [u8]),
    /// GLOBAL's two lines, without their newlines, not yet checked to be UTF-8.
    Global {
        /// The module line.
        module: &'a [u8],
        /// The name line.
        name: &'a [u8],
    },
}

/// One decoded opcode: `data[offset]` is the opcode, `data[offset + 1..end]` its argument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Op<'a> {
    /// Offset of the opcode byte.
    pub offset: usize,
    /// The opcode byte (see [`super::opcodes`]).
    pub code: u8,
    /// The decoded argument.
    pub arg: Arg<'a>,
    /// Offset just past the argument: where the next opcode starts.
    pub end: usize,
}

impl Op<'_> {
    /// The argument's bytes: `offset + 1..end`.
    pub fn arg_range(&self) -> std::ops::Range<usize> {
        self.offset + 1..self.end
    }
}

/// Decodes the opcode at `at`. Errors carry `at` as their offset: a truncated argument
/// (`Truncated` naming which), an opcode outside the dialect (`ForeignOpcode` for valid
/// Python pickle, `UnknownOpcode` otherwise), or `NoStop` when `at` is the end of data.
#[inline(always)]
pub fn decode(data: &[u8], at: usize) -> Result<Op<'_>, PickleError> {
    let err = |kind| PickleError {
        offset: at as u64,
        kind,
    };
    let Some(&code) = data.get(at) else {
        return Err(err(PickleErrorKind::NoStop));
    };
    let le = little_endian;
    let mut pos = at + 1;
    // A macro, not a closure: the unpickler's hot loop calls this for every opcode, and
    // a closure returning `Result` was not inlined (measured: 3% of a 5,000-tensor load).
    macro_rules! take {
        ($n:expr, $what:expr) => {{
            let n: usize = $n;
            if data.len() - pos < n {
                return Err(truncated(at, $what));
            }
            let s = &data[pos..pos + n];
            pos += n;
            s
        }};
    }
    let arg = match code {
        op::PROTO => Arg::Proto(take!(1, "protocol")[0]),
        op::BINPUT => Arg::Memo(take!(1, "BINPUT id")[0] as u32),
        op::LONG_BINPUT => Arg::Memo(le(take!(4, "LONG_BINPUT id")) as u32),
        op::BINGET => Arg::Memo(take!(1, "BINGET id")[0] as u32),
        op::LONG_BINGET => Arg::Memo(le(take!(4, "LONG_BINGET id")) as u32),
        op::BININT1 => Arg::Int(take!(1, "BININT1")[0] as i64),
        op::BININT2 => Arg::Int(le(take!(2, "BININT2")) as i64),
        op::BININT => Arg::Int(le(take!(4, "BININT")) as u32 as i32 as i64),
        op::LONG1 => {
            let n = take!(1, "LONG1 length")[0] as usize;
            Arg::Long(take!(n, "LONG1 value"))
        }
        op::BINFLOAT => {
            let b: [u8; 8] = take!(8, "BINFLOAT").try_into().expect("8 bytes");
            Arg::Float(f64::from_be_bytes(b))
        }
        op::BINUNICODE => {
            let n = le(take!(4, "BINUNICODE length")) as usize;
            Arg::Str(take!(n, "string data"))
        }
        op::BINUNICODE8 => {
            let n = le(take!(8, "BINUNICODE8 length"));
            let n =
                usize::try_from(n).map_err(|_| err(PickleErrorKind::Truncated("string data")))?;
            Arg::Str(take!(n, "string data"))
        }
        op::GLOBAL => {
            let module = line(data, &mut pos).ok_or_else(|| truncated(at, "GLOBAL module"))?;
            let name = line(data, &mut pos).ok_or_else(|| truncated(at, "GLOBAL name"))?;
            Arg::Global { module, name }
        }
        op::STOP
        | op::MARK
        | op::EMPTY_TUPLE
        | op::TUPLE1
        | op::TUPLE2
        | op::TUPLE3
        | op::TUPLE
        | op::EMPTY_LIST
        | op::APPEND
        | op::APPENDS
        | op::LIST
        | op::EMPTY_DICT
        | op::DICT
        | op::SETITEM
        | op::SETITEMS
        | op::NEWOBJ
        | op::BUILD
        | op::REDUCE
        | op::BINPERSID
        | op::NEWTRUE
        | op::NEWFALSE
        | op::NONE => Arg::None,
        other => {
            return Err(err(match op::name(other) {
                Some(n) => PickleErrorKind::ForeignOpcode(n),
                None => PickleErrorKind::UnknownOpcode(other),
            }));
        }
    };
    Ok(Op {
        offset: at,
        code,
        arg,
        end: pos,
    })
}

#[cold]
fn truncated(at: usize, what: &'static str) -> PickleError {
    PickleError {
        offset: at as u64,
        kind: PickleErrorKind::Truncated(what),
    }
}

#[inline(always)]
fn little_endian(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(w)
}

/// The line at `*pos` without its newline, moving `*pos` past it.
fn line<'a>(data: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let rest = &data[*pos..];
    let n = rest.iter().position(|&b| b == b'\n')?;
    *pos += n + 1;
    Some(&rest[..n])
}

/// The opcodes of a pickle from its start through STOP. A decoding error (or data that
/// ends before STOP) is yielded once, and then the walk ends.
pub fn ops(data: &[u8]) -> Ops<'_> {
    Ops {
        data,
        pos: 0,
        done: false,
    }
}

/// The iterator of [`ops`].
pub struct Ops<'a> {
    data: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Ops<'a> {
    /// Where the next opcode starts (after STOP: the first byte past the pickle).
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Ops<'a> {
    type Item = Result<Op<'a>, PickleError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = decode(self.data, self.pos);
        match &r {
            Ok(o) => {
                self.pos = o.end;
                self.done = o.code == op::STOP;
            }
            Err(_) => self.done = true,
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_argument_kind_decodes_with_its_span() {
        let mut p = vec![op::PROTO, 2, op::MARK];
        p.extend([op::BININT1, 7, op::BININT2, 1, 2, op::BININT]);
        p.extend((-5i32).to_le_bytes());
        p.extend([op::LONG1, 8]);
        p.extend((-1i64 << 40).to_le_bytes());
        p.push(op::BINFLOAT);
        p.extend(1.5f64.to_be_bytes());
        p.push(op::BINUNICODE);
        p.extend(3u32.to_le_bytes());
        p.extend(b"abc");
        p.extend(b"ctorch\nFloatStorage\n");
        p.extend([
            op::BINPUT,
            9,
            op::LONG_BINGET,
            1,
            0,
            0,
            1,
            op::TUPLE,
            op::STOP,
        ]);
        let got: Vec<Op> = ops(&p).collect::<Result<_, _>>().unwrap();
        let args: Vec<Arg> = got.iter().map(|o| o.arg).collect();
        assert_eq!(
            args,
            [
                Arg::Proto(2),
                Arg::None,
                Arg::Int(7),
                Arg::Int(0x201),
                Arg::Int(-5),
                Arg::Long(&(-1i64 << 40).to_le_bytes()),
                Arg::Float(1.5),
                Arg::Str(b"abc"),
                Arg::Global {
                    module: b"torch",
                    name: b"FloatStorage"
                },
                Arg::Memo(9),
                Arg::Memo(0x0100_0001),
                Arg::None,
                Arg::None,
            ]
        );
        // Spans tile the pickle.
        for w in got.windows(2) {
            assert_eq!(w[0].end, w[1].offset);
        }
        assert_eq!(got.last().unwrap().end, p.len());
    }

    #[test]
    fn truncation_and_foreign_opcodes_are_errors_at_the_opcode() {
        let p = [op::PROTO, 2, op::BINUNICODE, 9, 0, 0, 0, b'x'];
        let r: Vec<_> = ops(&p).collect();
        assert_eq!(r.len(), 2);
        let e = r[1].clone().unwrap_err();
        assert_eq!(e.offset, 2);
        assert_eq!(e.kind, PickleErrorKind::Truncated("string data"));
        let e = decode(&[0x95, 0, 0], 0).unwrap_err();
        assert_eq!(e.kind, PickleErrorKind::ForeignOpcode("FRAME"));
        let e = decode(&[0xff], 0).unwrap_err();
        assert_eq!(e.kind, PickleErrorKind::UnknownOpcode(0xff));
        let e = decode(&[op::PROTO, 2], 2).unwrap_err();
        assert_eq!(e.kind, PickleErrorKind::NoStop);
        // After STOP the walk ends, whatever follows.
        assert_eq!(ops(&[op::NONE, op::STOP, 0xff]).count(), 2);
    }
}

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

use std::fmt::Write;

use bytes::Bytes;

use ptconform_core::error::{Error, FormatError, Result};
use ptconform_core::flatbuffer::generated::mobile_bytecode as fb;
use ptconform_core::flatbuffer::{is_flatbuffer, support};
use ptconform_core::inspect::sha256_hex;
use ptconform_core::model::ScalarType;
use ptconform_core::model::bytecode::OpCode;
use ptconform_core::pickle::opcodes as op;
use ptconform_core::pickle::ops::{self, Arg};
use ptconform_core::pickle::{self, PickleErrorKind};
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
    let mut s = String::new();
    write_bytes(&mut s, data);
    s
}

/// [`show_bytes`], appended to `out`.
pub fn write_bytes(out: &mut String, data: &[u8]) {
    let _ = if data.len() > INLINE_LIMIT {
        write!(out, "<{} bytes sha256 {}>", data.len(), sha256_hex(data))
    } else {
        match std::str::from_utf8(data) {
            Ok(s) => write!(out, "{s:?}"),
            Err(_) => write!(out, "b\"{}\"", data.escape_ascii()),
        }
    };
}

/// `<N bytes sha256 H>`.
pub fn summary(data: &[u8]) -> String {
    format!("<{} bytes sha256 {}>", data.len(), sha256_hex(data))
}

fn hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 3);
    for (i, b) in data.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
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

mod disassembler;
mod flatbuffer;
mod zip;

use flatbuffer::dump_flatbuffer;
use zip::dump_zip;

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

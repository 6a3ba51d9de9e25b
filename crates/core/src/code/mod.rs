//! `code/*.py` declarations (`spec/code.md`): classes, interfaces, NamedTuples, enums and
//! free functions, with method bodies kept as opaque text.
//!
//! * [`parse_source`] reads one file's declarations; it is total (never panics, work
//!   linear in the input, recursion depth-limited) and reports 1-based line numbers.
//! * [`print_source`] writes them back in PyTorch's layout: for any file PyTorch wrote,
//!   `print_source(parse_source(text))` is `text` byte for byte.
//! * [`format_float`], [`format_str_literal`], [`parse_literal`]: constant literals.
//! * [`form::canonical`]: a definition up to the local names PyTorch's printers number.

pub mod form;
mod lex;
mod literal;
mod parse;
mod print;
#[cfg(test)]
mod tests;

pub use lex::{is_identifier, is_name_component};
pub use literal::{
    Literal, MAX_LITERAL_DEPTH, format_float, format_literal, format_str_literal, parse_literal,
    parse_string_literal, str_prints_inline,
};
pub use parse::parse_source;
pub use print::print_source;

/// A syntax error in a code file (or in a standalone literal, reported on line 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CodeError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong on that line.
    pub message: String,
}

/// The text of the code record `record`, or a `code-encoding` error at the first byte that
/// is not UTF-8 (PyTorch's parser reads only UTF-8 sources). Every reader of code records
/// (load, `check`, `dump`) decodes through here.
pub fn source_text<'a>(record: &str, bytes: &'a [u8]) -> Result<&'a str, crate::FormatError> {
    std::str::from_utf8(bytes).map_err(|e| {
        crate::FormatError::new(
            crate::error::rules::CODE_ENCODING,
            record,
            Some(e.valid_up_to() as u64),
            "code file is not valid UTF-8",
        )
    })
}

/// [`parse_source`] of the source `record` (a zip's `code/…` record or a flatbuffer's
/// `Module.jit_sources[k]`), its failure as a `code-syntax` error naming the record.
pub fn parse_record(
    record: impl Into<String>,
    qualifier: &str,
    text: &str,
) -> Result<Vec<crate::model::types::Definition>, crate::FormatError> {
    parse_source(qualifier, text).map_err(|e| {
        crate::FormatError::new(
            crate::error::rules::CODE_SYNTAX,
            record,
            None,
            e.to_string(),
        )
    })
}

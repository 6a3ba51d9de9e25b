//! Constant literals as PyTorch prints them in `code/` files (code.md §3.4): `Final`
//! constants, enum values, parameter defaults.

use std::fmt;

use super::CodeError;
use super::lex::read_string;

/// Deepest tuple nesting [`parse_literal`] accepts (`((()))` is 3); keeps the recursive
/// descent bounded.
pub const MAX_LITERAL_DEPTH: usize = 64;

/// A constant value written as a literal.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An integer literal (may also stand for an integral float, see [`Literal::as_f64`]).
    Int(i64),
    /// A float literal (`2.`, `0.10000000000000001`, `inf`).
    Float(f64),
    /// A string literal, unescaped.
    Str(String),
    /// A parenthesized tuple of literals (`(1, 2)`, `(1,)`, `()`).
    Tuple(Vec<Literal>),
}

impl Literal {
    /// The value as a float, accepting an integer literal too: PyTorch prints integral
    /// floats in [1e10, 1e17) without `.` or exponent (code.md §3.4 trap), so a tolerant
    /// reader of a `Final[float]` must take `Int` as well.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Literal::Float(f) => Some(f),
            Literal::Int(i) => Some(i as f64),
            _ => None,
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::None => f.write_str("None"),
            Literal::Bool(true) => f.write_str("True"),
            Literal::Bool(false) => f.write_str("False"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => f.write_str(&format_float(*x)),
            Literal::Str(s) => f.write_str(&format_str_literal(s)),
            Literal::Tuple(items) => {
                f.write_str("(")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                // A one-element tuple needs the trailing comma to stay a tuple.
                if items.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Prints a literal as PyTorch does (same as `Display`).
pub fn format_literal(lit: &Literal) -> String {
    lit.to_string()
}

/// Prints a float as PyTorch does in code: integral and |v| < 1e10 → digits and `.`
/// (`2.`, `-0.`); otherwise `%.17g` (`0.10000000000000001`, `1e+100`), which for integral
/// values in [1e10, 1e17) gives bare digits (`10000000000000000`, the trap of code.md §3.4);
/// `inf`, `-inf`, `nan`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v.trunc() == v && v.abs() < 1e10 {
        // Rust's shortest representation of an integral f64 below 1e10 is its digits
        // (`-0` for negative zero).
        return format!("{v}.");
    }
    format_g17(v)
}

/// C's `%.17g` for a finite value.
fn format_g17(v: f64) -> String {
    // 17 significant digits, correctly rounded (ties to even, like glibc).
    let sci = format!("{:.16e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if v.is_sign_negative() { "-" } else { "" };
    if !(-4..17).contains(&exp) {
        let frac = digits[1..].trim_end_matches('0');
        let dot = if frac.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!(
            "{sign}{}{dot}{frac}e{esign}{:02}",
            &digits[..1],
            exp.unsigned_abs()
        );
    }
    let (int, frac) = if exp >= 0 {
        let split = exp as usize + 1;
        (digits[..split].to_string(), digits[split..].to_string())
    } else {
        let zeros = "0".repeat((-exp - 1) as usize);
        ("0".to_string(), format!("{zeros}{digits}"))
    };
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// Quotes a string as PyTorch's printer does: double quotes; `\\`, `\'`, `\"`, `\a \b \f
/// \n \r \t \v`; every other byte outside printable ASCII as a 3-digit octal escape.
/// PyTorch itself moves strings with non-ASCII characters to `constants.pkl`
/// (`CONSTANTS.cN`, see [`str_prints_inline`]); they are escaped byte-wise here.
pub fn format_str_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'"' => out.push_str("\\\""),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x0b => out.push_str("\\v"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out.push('"');
    out
}

/// Whether PyTorch prints this string constant inline in code. Observed: an ASCII string
/// with control characters is printed inline (`\001`), one with `é` became `CONSTANTS.c0`.
pub fn str_prints_inline(s: &str) -> bool {
    s.is_ascii()
}

/// Decodes a whole quoted string literal (the inverse of [`format_str_literal`]).
pub fn parse_string_literal(s: &str) -> Option<String> {
    match read_string(s) {
        Ok((v, used)) if used == s.len() => Some(v),
        _ => None,
    }
}

/// Parses a constant literal: `None`, `True`, `False`, decimal ints (i64), floats (`2.`,
/// `0.5`, `1e+100`, `inf`, `-inf`, `nan`), quoted strings and tuples (`()`, `(1,)`,
/// `(1, 0.5, "t")`). Errors are reported on line 1 with the column in the message.
pub fn parse_literal(text: &str) -> Result<Literal, CodeError> {
    let mut p = LiteralParser { text, pos: 0 };
    p.skip_ws();
    let result = p.value(0).and_then(|v| {
        p.skip_ws();
        if p.pos == text.len() {
            Ok(v)
        } else {
            Err("unexpected text after the literal".to_string())
        }
    });
    result.map_err(|message| CodeError {
        line: 1,
        message: format!("invalid literal at column {}: {message}", p.pos + 1),
    })
}

struct LiteralParser<'a> {
    text: &'a str,
    pos: usize,
}

impl LiteralParser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }

    fn eat(&mut self, c: char) -> bool {
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Literal, String> {
        if depth >= MAX_LITERAL_DEPTH {
            return Err("literal nested too deeply".into());
        }
        let Some(c) = self.rest().chars().next() else {
            return Err("expected a literal".into());
        };
        match c {
            '(' => self.tuple(depth),
            '"' | '\'' => {
                let (s, used) = read_string(self.rest())?;
                self.pos += used;
                Ok(Literal::Str(s))
            }
            '-' | '+' | '.' | '0'..='9' => self.number(),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let word_len = super::lex::identifier_len(self.rest());
                let word = &self.rest()[..word_len];
                let lit = match word {
                    "None" => Literal::None,
                    "True" => Literal::Bool(true),
                    "False" => Literal::Bool(false),
                    "inf" => Literal::Float(f64::INFINITY),
                    "nan" => Literal::Float(f64::NAN),
                    _ => return Err(format!("unknown name {word:?} in literal")),
                };
                self.pos += word_len;
                Ok(lit)
            }
            c => Err(format!("unexpected character {c:?}")),
        }
    }

    fn tuple(&mut self, depth: usize) -> Result<Literal, String> {
        self.pos += 1;
        self.skip_ws();
        let mut items = Vec::new();
        let mut trailing_comma = false;
        while !self.eat(')') {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            if self.eat(',') {
                trailing_comma = true;
                self.skip_ws();
            } else if self.eat(')') {
                trailing_comma = false;
                break;
            } else {
                return Err("expected ',' or ')' in tuple".into());
            }
        }
        // `(x)` without a comma is just a parenthesized value, as in Python.
        if items.len() == 1 && !trailing_comma {
            return Ok(items.pop().unwrap_or(Literal::None));
        }
        Ok(Literal::Tuple(items))
    }

    fn number(&mut self) -> Result<Literal, String> {
        let b = self.rest().as_bytes();
        let mut i = 0;
        let negative = b.first() == Some(&b'-');
        if matches!(b.first(), Some(b'-' | b'+')) {
            i += 1;
        }
        let after_sign = &self.rest()[i..];
        for (word, value) in [("inf", f64::INFINITY), ("nan", f64::NAN)] {
            if after_sign.starts_with(word) && super::lex::identifier_len(after_sign) == word.len()
            {
                self.pos += i + word.len();
                return Ok(Literal::Float(if negative { -value } else { value }));
            }
        }
        let digits = |i: &mut usize| {
            let start = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - start
        };
        let mut mantissa_digits = digits(&mut i);
        let mut is_float = false;
        if b.get(i) == Some(&b'.') {
            i += 1;
            is_float = true;
            mantissa_digits += digits(&mut i);
        }
        if mantissa_digits == 0 {
            return Err("expected digits".into());
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                return Err("expected exponent digits".into());
            }
            is_float = true;
        }
        if b.get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return Err("invalid number literal".into());
        }
        let token = &self.rest()[..i];
        let lit = if is_float {
            Literal::Float(token.parse().map_err(|_| "invalid float literal")?)
        } else {
            Literal::Int(
                token
                    .parse()
                    .map_err(|_| format!("integer literal {token} out of int64 range"))?,
            )
        };
        self.pos += i;
        Ok(lit)
    }
}

//! Character-level helpers shared by the header parser and the literal parser: bracket and
//! string-literal tracking, splitting at top-level separators, and string-literal decoding.
//! Everything here is iterative (no recursion), so work is linear in the input.

/// Tracks bracket nesting and string literals over a stream of characters.
#[derive(Default)]
pub(crate) struct Scan {
    /// Open brackets, innermost last (the closing bracket each one expects).
    stack: Vec<char>,
    quote: Option<char>,
    escape: bool,
    /// Set by the first unmatched or mismatched closing bracket.
    pub bad_close: Option<char>,
}

impl Scan {
    pub fn feed(&mut self, c: char) {
        if let Some(q) = self.quote {
            if self.escape {
                self.escape = false;
            } else if c == '\\' {
                self.escape = true;
            } else if c == q {
                self.quote = None;
            }
            return;
        }
        match c {
            '"' | '\'' => self.quote = Some(c),
            '(' => self.stack.push(')'),
            '[' => self.stack.push(']'),
            '{' => self.stack.push('}'),
            ')' | ']' | '}' => {
                let matched = self.stack.pop() == Some(c);
                if !matched {
                    self.bad_close.get_or_insert(c);
                }
            }
            _ => {}
        }
    }

    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    pub fn in_string(&self) -> bool {
        self.quote.is_some()
    }

    /// Outside every bracket and string, with no bracket error so far.
    pub fn at_top(&self) -> bool {
        self.stack.is_empty() && self.quote.is_none() && self.bad_close.is_none()
    }
}

/// Byte offsets of `sep` outside brackets and strings.
pub(crate) fn top_level_positions(text: &str, sep: char) -> Vec<usize> {
    let mut out = Vec::new();
    let mut scan = Scan::default();
    for (i, c) in text.char_indices() {
        if c == sep && scan.at_top() {
            out.push(i);
        } else {
            scan.feed(c);
        }
    }
    out
}

/// The first `sep` outside brackets and strings.
pub(crate) fn find_top(text: &str, sep: char) -> Option<usize> {
    // Most lines (attribute declarations) hold no separator at all: a plain search
    // settles them without the bracket and string scan.
    if !text.contains(sep) {
        return None;
    }
    let mut scan = Scan::default();
    for (i, c) in text.char_indices() {
        if c == sep && scan.at_top() {
            return Some(i);
        }
        scan.feed(c);
    }
    None
}

/// Whether `text` is a complete, bracket-balanced expression fragment (no open string).
pub(crate) fn balanced(text: &str) -> bool {
    let mut scan = Scan::default();
    text.chars().for_each(|c| scan.feed(c));
    scan.at_top()
}

/// Splits at top-level `sep`, returning `(byte offset, piece)` pairs.
pub(crate) fn split_top(text: &str, sep: char) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    for p in top_level_positions(text, sep) {
        out.push((start, &text[start..p]));
        start = p + sep.len_utf8();
    }
    out.push((start, &text[start..]));
    out
}

/// `[A-Za-z_][A-Za-z0-9_]*`: what PyTorch prints as a bare attribute name (anything else
/// goes through `__annotations__["..."]`).
pub fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(b.first(), Some(c) if c.is_ascii_alphabetic() || *c == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// A component of a qualified name in a pickle `GLOBAL` (`__torch__.Ünïcode`): a letter
/// or `_`, then letters, digits or `_`, in Unicode (Python's identifiers, which name the
/// classes). Wider than [`is_identifier`], which decides how code is *printed*.
pub fn is_name_component(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// Python keywords: an attribute so named cannot be declared as `NAME : TYPE` (a line
/// `def : int` would read as a method), so it goes through `__annotations__`.
pub fn is_keyword(s: &str) -> bool {
    matches!(
        s,
        "False"
            | "None"
            | "True"
            | "and"
            | "as"
            | "assert"
            | "async"
            | "await"
            | "break"
            | "class"
            | "continue"
            | "def"
            | "del"
            | "elif"
            | "else"
            | "except"
            | "finally"
            | "for"
            | "from"
            | "global"
            | "if"
            | "import"
            | "in"
            | "is"
            | "lambda"
            | "nonlocal"
            | "not"
            | "or"
            | "pass"
            | "raise"
            | "return"
            | "try"
            | "while"
            | "with"
            | "yield"
    )
}

/// Length in bytes of the identifier at the start of `s` (0 if none).
pub(crate) fn identifier_len(s: &str) -> usize {
    let b = s.as_bytes();
    if !matches!(b.first(), Some(c) if c.is_ascii_alphabetic() || *c == b'_') {
        return 0;
    }
    b.iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        .unwrap_or(b.len())
}

/// Decodes the quoted string literal at the start of `s` (`"..."` or `'...'`, C escapes:
/// `\n \t \r \a \b \f \v \\ \' \"`, octal `\ooo` (1–3 digits) and `\xHH`). Escapes denote
/// bytes, so octal-escaped UTF-8 sequences decode to their character. Returns the value
/// and the number of bytes consumed, including both quotes.
pub(crate) fn read_string(s: &str) -> Result<(String, usize), String> {
    let b = s.as_bytes();
    let q = match b.first() {
        Some(&q @ (b'"' | b'\'')) => q,
        _ => return Err("expected a string literal".into()),
    };
    // Most literals have no escape: then the value is the text between the quotes.
    if let Some(n) = b[1..]
        .iter()
        .position(|&c| c == q || c == b'\\' || c == b'\n')
        && b[1 + n] == q
    {
        return Ok((s[1..1 + n].to_string(), n + 2));
    }
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        let Some(&c) = b.get(i) else {
            return Err("unterminated string literal".into());
        };
        i += 1;
        if c == q {
            break;
        }
        if c == b'\n' {
            return Err("unterminated string literal".into());
        }
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = b.get(i) else {
            return Err("unterminated string literal".into());
        };
        i += 1;
        let byte = match e {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'v' => 0x0b,
            b'\\' | b'\'' | b'"' => e,
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match b.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                u8::try_from(v).map_err(|_| format!("octal escape \\{v:o} is above \\377"))?
            }
            b'x' => {
                let hex = b.get(i..i + 2).and_then(|h| std::str::from_utf8(h).ok());
                let v = hex
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("\\x must be followed by two hex digits")?;
                i += 2;
                v
            }
            _ => {
                let shown: String = s[i - 1..].chars().next().into_iter().collect();
                return Err(format!("unknown escape sequence \\{shown}"));
            }
        };
        out.push(byte);
    }
    let value = String::from_utf8(out).map_err(|_| "string literal is not valid UTF-8")?;
    Ok((value, i))
}

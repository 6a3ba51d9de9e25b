//! What two printings of one definition may differ in without differing in meaning.
//!
//! PyTorch's zip writer and its flatbuffer writer (`jit_sources`) print the same
//! TorchScript with generated local names numbered differently: temporaries `_N` are
//! numbered per file, so a definition printed after another one starts at another `N`,
//! and SSA renames (`input` / `input0`) depend on what was printed before. Neither is
//! observable by a program: [`canonical`] renames every local a definition assigns, and
//! every `_N`, to its first-occurrence index, so two printings compare equal exactly when
//! they are the same code up to a consistent renaming of those names.

use std::collections::HashMap;

/// `text` (one top-level definition) with its local names replaced by `$0`, `$1`, ... in
/// order of first occurrence. Names after a `.` (attributes, qualified names), string
/// literals, comments and everything else are kept as written.
pub fn canonical(text: &str) -> String {
    let inlined = inline_temporaries(text);
    let tokens = tokens(&inlined);
    let locals = assigned_names(&tokens);
    let mut numbering: HashMap<&str, usize> = HashMap::new();
    let mut out = String::with_capacity(text.len());
    for t in &tokens {
        match t {
            Token::Name { text, after_dot } if !after_dot && is_local(text, &locals) => {
                let n = numbering.len();
                let k = *numbering.entry(text).or_insert(n);
                out.push('$');
                out.push_str(&k.to_string());
            }
            Token::Name { text, .. } | Token::Other(text) => out.push_str(text),
        }
    }
    out
}

/// Whether `name` is a generated temporary (`_0`, `_17`).
fn is_temporary(name: &str) -> bool {
    name.len() > 1 && name.starts_with('_') && name[1..].bytes().all(|b| b.is_ascii_digit())
}

/// PyTorch's printers bind an expression to a temporary (`_3 = [a, b]` then `f(_3)`) or
/// write it inline (`f([a, b])`) depending on what they printed before. A temporary
/// assigned on one line and used once, on the next line at the same indentation, is
/// substituted into that use, so both printings read the same.
fn inline_temporaries(text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let uses = |l: &str, name: &str| {
        tokens(l)
            .iter()
            .filter(|t| matches!(t, Token::Name { text, after_dot: false } if *text == name))
            .count()
    };
    let mut i = 0;
    while i + 1 < lines.len() {
        let line = &lines[i];
        let indent = line.len() - line.trim_start().len();
        let rest = line.trim_start();
        let name_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let name = &rest[..name_len];
        let next_indent = lines[i + 1].len() - lines[i + 1].trim_start().len();
        let expr = rest[name_len..].strip_prefix(" = ").unwrap_or("");
        if !is_temporary(name) || next_indent != indent || expr.is_empty() {
            i += 1;
            continue;
        }
        // Uses within the same method: temporaries are numbered per method by one
        // writer and per file by the other, so `_0` of the next method is another name.
        let total: usize = lines[i + 1..]
            .iter()
            .take_while(|l| {
                let t = l.trim_start();
                !(t.starts_with("def ") || t.starts_with("class "))
            })
            .map(|l| uses(l, name))
            .sum();
        if total != 1 || uses(&lines[i + 1], name) != 1 {
            i += 1;
            continue;
        }
        let (name, expr) = (name.to_string(), expr.to_string());
        let mut merged = String::new();
        for t in tokens(&lines[i + 1]) {
            match t {
                Token::Name {
                    text,
                    after_dot: false,
                } if text == name => merged.push_str(&expr),
                Token::Name { text, .. } | Token::Other(text) => merged.push_str(text),
            }
        }
        lines[i + 1] = merged;
        lines.remove(i);
        // The merged line may itself be the use of a temporary one line up.
        i = i.saturating_sub(1);
    }
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn is_local(name: &str, locals: &[&str]) -> bool {
    is_temporary(name) || locals.contains(&name)
}

#[derive(Debug)]
enum Token<'a> {
    Name { text: &'a str, after_dot: bool },
    Other(&'a str),
}

/// Identifiers, string literals (kept whole) and single other characters.
fn tokens(text: &str) -> Vec<Token<'_>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut last_significant: u8 = b'\n';
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80) {
                i += 1;
            }
            out.push(Token::Name {
                text: &text[start..i],
                after_dot: last_significant == b'.',
            });
            last_significant = b'a';
        } else if c.is_ascii_digit() {
            // A number (with any letters glued to it, e.g. `1e5`): never a name.
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            out.push(Token::Other(&text[start..i]));
            last_significant = b'0';
        } else if c == b'"' || c == b'\'' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(b.len());
            out.push(Token::Other(&text[start..i]));
            last_significant = b'"';
        } else {
            let len = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push(Token::Other(&text[i..i + len]));
            if !c.is_ascii_whitespace() {
                last_significant = c;
            }
            i += len;
        }
    }
    out
}

/// Names a statement assigns: `NAME = ...`, `NAME, NAME = ...` and
/// `for NAME in` / `for NAME, NAME in` at the start of a line.
fn assigned_names<'a>(tokens: &[Token<'a>]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut line_start = true;
    let mut i = 0;
    while i < tokens.len() {
        let at_start = line_start;
        line_start = matches!(tokens[i], Token::Other("\n"));
        if !at_start || !matches!(tokens[i], Token::Name { .. }) {
            // Skip the indentation of a new line without losing the line start.
            if at_start && matches!(tokens[i], Token::Other(" " | "\t")) {
                line_start = true;
            }
            i += 1;
            continue;
        }
        let mut j = i;
        let is_for = matches!(tokens[j], Token::Name { text: "for", .. });
        if is_for {
            j += 1;
        }
        let mut names = Vec::new();
        loop {
            while matches!(tokens.get(j), Some(Token::Other(" "))) {
                j += 1;
            }
            match tokens.get(j) {
                Some(Token::Name { text, .. }) => names.push(*text),
                _ => break,
            }
            j += 1;
            while matches!(tokens.get(j), Some(Token::Other(" "))) {
                j += 1;
            }
            match tokens.get(j) {
                Some(Token::Other(",")) => j += 1,
                _ => break,
            }
        }
        while matches!(tokens.get(j), Some(Token::Other(" "))) {
            j += 1;
        }
        let ends = match tokens.get(j) {
            Some(Token::Name { text: "in", .. }) => is_for,
            Some(Token::Other("=")) => {
                !is_for && !matches!(tokens.get(j + 1), Some(Token::Other("=")))
            }
            _ => false,
        };
        if ends {
            out.extend(names);
        }
        i += 1;
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn renumbered_temporaries_and_ssa_names_are_one_form() {
        let a = "def f(x: Tensor) -> Tensor:\n  _9 = \"msg\"\n  input = torch.relu(x)\n  input0 = torch.add(input, _9)\n  return input0\n";
        let b = "def f(x: Tensor) -> Tensor:\n  _13 = \"msg\"\n  input1 = torch.relu(x)\n  input2 = torch.add(input1, _13)\n  return input2\n";
        assert_eq!(canonical(a), canonical(b));
    }

    #[test]
    fn a_temporary_used_once_on_the_next_line_is_one_form_with_inlining() {
        let a = "  if c:\n    _27 = [a, b]\n    _28 = torch.zeros(_27, dtype=d)\n  return _28\n";
        let b = "  if c:\n    _3 = torch.zeros([a, b], dtype=d)\n  return _3\n";
        assert_eq!(canonical(a), canonical(b));
        // A temporary of one method is not a use of the next method's namesake.
        let e = "  def f(self):\n    _0 = g()\n    a, b, = _0\n    return a\n  def h(self):\n    _0 = k()\n    return _0\n";
        let f = "  def f(self):\n    a, b, = g()\n    return a\n  def h(self):\n    _7 = k()\n    return _7\n";
        assert_eq!(canonical(e), canonical(f));
        // Used twice: not inlined, so not the same as a single inlined use.
        let c = "  _0 = [a, b]\n  _1 = f(_0, _0)\n  return _1\n";
        let d = "  _1 = f([a, b], [a, b])\n  return _1\n";
        assert_ne!(canonical(c), canonical(d));
    }

    #[test]
    fn real_differences_stay_different() {
        let a = "def f(x: Tensor) -> Tensor:\n  _0 = torch.relu(x)\n  return _0\n";
        // Another operator, another parameter, a swapped use, a changed string.
        for b in [
            "def f(x: Tensor) -> Tensor:\n  _0 = torch.sigmoid(x)\n  return _0\n",
            "def f(y: Tensor) -> Tensor:\n  _0 = torch.relu(y)\n  return _0\n",
            "def f(x: Tensor) -> Tensor:\n  _0 = torch.relu(x)\n  return x\n",
        ] {
            assert_ne!(canonical(a), canonical(b), "{b}");
        }
        // Renaming must be consistent: two locals may not merge into one.
        let c = "  a = f(x)\n  b = g(x)\n  return h(a, b)\n";
        let d = "  a = f(x)\n  b = g(x)\n  return h(a, a)\n";
        assert_ne!(canonical(c), canonical(d));
        // Attributes and strings are not renamed.
        let e = "  _0 = self.layer1\n  return \"_1\"\n";
        let f = "  _0 = self.layer2\n  return \"_1\"\n";
        assert_ne!(canonical(e), canonical(f));
    }
}

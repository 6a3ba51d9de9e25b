//! `code/*.py` declarations (`spec/code.md`): classes, interfaces, NamedTuples, enums and
//! free functions, with method bodies kept as opaque text.

use crate::model::{
    AttributeDecl, ClassDef, ClassKind, ConstantDecl, Definition, EnumDef, FunctionDef,
    InterfaceDef, MethodDef, NamedTupleDef, Param, QualifiedName, Signature, TypeExpr,
};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CodeError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> CodeError {
    CodeError {
        line: line + 1,
        message: message.into(),
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Tracks bracket depth and string literals across a signature.
#[derive(Default)]
struct Scan {
    depth: i64,
    quote: Option<char>,
    escape: bool,
}

impl Scan {
    fn feed(&mut self, c: char) {
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
            '(' | '[' | '{' => self.depth += 1,
            ')' | ']' | '}' => self.depth -= 1,
            _ => {}
        }
    }
}

/// Splits at `sep` characters outside brackets and strings.
fn split_top(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut scan = Scan::default();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == sep && scan.depth == 0 && scan.quote.is_none() {
            out.push(&text[start..i]);
            start = i + c.len_utf8();
        } else {
            scan.feed(c);
        }
    }
    out.push(&text[start..]);
    out
}

/// Index of the first `needle` outside brackets and strings.
fn find_top(text: &str, needle: char) -> Option<usize> {
    let mut scan = Scan::default();
    for (i, c) in text.char_indices() {
        if c == needle && scan.depth == 0 && scan.quote.is_none() {
            return Some(i);
        }
        scan.feed(c);
    }
    None
}

fn parse_type(s: &str, line: usize) -> Result<TypeExpr, CodeError> {
    TypeExpr::parse(s.trim()).map_err(|e| err(line, e.to_string()))
}

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_alphabetic() || f == '_')
        && c.all(|c| c.is_alphanumeric() || c == '_')
}

/// Parses `name: T=default` (type and default optional).
fn parse_param(text: &str, line: usize) -> Result<Param, CodeError> {
    let text = text.trim();
    let (head, default) = match find_top(text, '=') {
        Some(i) => (&text[..i], Some(text[i + 1..].trim().to_string())),
        None => (text, None),
    };
    let (name, ty) = match head.split_once(':') {
        Some((n, t)) => (n.trim(), Some(parse_type(t, line)?)),
        None => (head.trim(), None),
    };
    if !is_identifier(name) {
        return Err(err(line, format!("invalid parameter name {name:?}")));
    }
    Ok(Param {
        name: name.to_string(),
        ty,
        default,
    })
}

/// Parses `def NAME(params) -> RET:` given as one string (continuation lines joined).
fn parse_signature(text: &str, line: usize) -> Result<(String, Signature), CodeError> {
    let rest = text
        .trim()
        .strip_prefix("def ")
        .ok_or_else(|| err(line, "expected 'def'"))?;
    let open = rest
        .find('(')
        .ok_or_else(|| err(line, "expected '(' after the function name"))?;
    let name = rest[..open].trim();
    if !is_identifier(name) {
        return Err(err(line, format!("invalid function name {name:?}")));
    }
    let after = &rest[open + 1..];
    let close =
        find_top(after, ')').ok_or_else(|| err(line, "unbalanced parentheses in signature"))?;
    let params_text = &after[..close];
    let tail = after[close + 1..].trim();
    let tail = tail
        .strip_suffix(':')
        .ok_or_else(|| err(line, "signature must end with ':'"))?
        .trim();
    let returns = if tail.is_empty() {
        None
    } else {
        let r = tail
            .strip_prefix("->")
            .ok_or_else(|| err(line, format!("unexpected text {tail:?} after parameters")))?;
        Some(parse_type(r, line)?)
    };
    let mut params = Vec::new();
    if !params_text.trim().is_empty() {
        for p in split_top(params_text, ',') {
            if p.trim().is_empty() {
                continue;
            }
            params.push(parse_param(p, line)?);
        }
    }
    Ok((name.to_string(), Signature { params, returns }))
}

/// Reads a `def` starting at `lines[i]` (indented `ind`): the signature continues until a
/// line ending in `:` at bracket depth 0; the body is every following line indented more
/// than `ind`. Returns the method and the index of the next line.
fn parse_def(lines: &[&str], mut i: usize, ind: usize) -> Result<(MethodDef, usize), CodeError> {
    let start = i;
    let mut sig = String::new();
    let mut scan = Scan::default();
    loop {
        let Some(l) = lines.get(i) else {
            return Err(err(start, "signature does not end with ':'"));
        };
        let l = l.trim_end_matches('\n');
        for c in l.chars() {
            scan.feed(c);
        }
        if i > start {
            sig.push(' ');
        }
        sig.push_str(l.trim());
        i += 1;
        if scan.depth == 0 && scan.quote.is_none() && l.trim_end().ends_with(':') {
            break;
        }
        if scan.depth < 0 {
            return Err(err(i - 1, "unbalanced brackets in signature"));
        }
        if i - start > 10_000 {
            return Err(err(start, "signature too long"));
        }
    }
    let (name, signature) = parse_signature(&sig, start)?;
    let mut body = String::new();
    while let Some(l) = lines.get(i) {
        if l.trim().is_empty() || indent(l) > ind {
            body.push_str(l);
            i += 1;
        } else {
            break;
        }
    }
    if body.trim().is_empty() {
        return Err(err(start, format!("def {name} has no body")));
    }
    Ok((
        MethodDef {
            name,
            signature,
            body,
        },
        i,
    ))
}

fn parse_name_list(text: &str, line: usize) -> Result<Vec<String>, CodeError> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| err(line, "expected a [\"name\", ] list"))?;
    let mut out = Vec::new();
    for item in split_top(inner, ',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        out.push(
            parse_string_literal(item)
                .ok_or_else(|| err(line, format!("expected a string, found {item:?}")))?,
        );
    }
    Ok(out)
}

/// Decodes a double- or single-quoted literal with C-style escapes (incl. octal).
pub fn parse_string_literal(s: &str) -> Option<String> {
    let q = s.chars().next()?;
    if (q != '"' && q != '\'') || s.len() < 2 || !s.ends_with(q) {
        return None;
    }
    let inner = &s[1..s.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if c == q {
                return None;
            }
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            d @ '0'..='7' => {
                let mut v = d.to_digit(8)?;
                for _ in 0..2 {
                    match chars.peek() {
                        Some(n @ '0'..='7') => {
                            v = v * 8 + n.to_digit(8)?;
                            chars.next();
                        }
                        _ => break,
                    }
                }
                out.push(char::from_u32(v)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// Parses one code file. `qualifier` is the file's dotted qualifier (`__torch__.a.b`).
pub fn parse_source(qualifier: &str, text: &str) -> Result<Vec<Definition>, CodeError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut defs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.trim().is_empty() {
            i += 1;
            continue;
        }
        if indent(l) != 0 {
            return Err(err(i, "expected a class or def at column 0"));
        }
        if l.starts_with("def ") {
            let (def, next) = parse_def(&lines, i, 0)?;
            let name = QualifiedName::join(qualifier, &def.name);
            defs.push(Definition::Function(FunctionDef { name, def }));
            i = next;
        } else if let Some(rest) = l.strip_prefix("class ") {
            let (def, next) = parse_class(qualifier, rest.trim_end(), &lines, i)?;
            defs.push(def);
            i = next;
        } else {
            return Err(err(
                i,
                format!(
                    "unexpected line {:?}",
                    l.trim_end().chars().take(60).collect::<String>()
                ),
            ));
        }
    }
    Ok(defs)
}

fn parse_class(
    qualifier: &str,
    header: &str,
    lines: &[&str],
    start: usize,
) -> Result<(Definition, usize), CodeError> {
    let header = header
        .strip_suffix(':')
        .ok_or_else(|| err(start, "class line must end with ':'"))?;
    let (name, base) = match header.split_once('(') {
        Some((n, b)) => (
            n.trim(),
            Some(
                b.strip_suffix(')')
                    .ok_or_else(|| err(start, "unbalanced class base"))?
                    .trim(),
            ),
        ),
        None => (header.trim(), None),
    };
    if !is_identifier(name) {
        return Err(err(start, format!("invalid class name {name:?}")));
    }
    let qname = QualifiedName::join(qualifier, name);
    let kind = match base {
        Some("Module") => ClassKind::Module,
        _ => ClassKind::Class,
    };
    let mut class = ClassDef::new(qname.clone(), kind);
    let mut iface_methods = Vec::new();
    let mut fields = Vec::new();
    let mut members = Vec::new();
    let mut i = start + 1;
    while let Some(l) = lines.get(i) {
        if l.trim().is_empty() {
            i += 1;
            continue;
        }
        let ind = indent(l);
        if ind == 0 {
            break;
        }
        if ind != 2 {
            return Err(err(i, "class items must be indented by 2 spaces"));
        }
        let item = l.trim();
        if item.starts_with("def ") {
            let (m, next) = parse_def(lines, i, 2)?;
            if matches!(base, Some("ModuleInterface") | Some("Interface")) {
                iface_methods.push((m.name, m.signature));
            } else {
                class.methods.push(m);
            }
            i = next;
            continue;
        }
        if let Some((lhs, rhs)) = item.split_once(" = ") {
            match lhs {
                "__parameters__" => class.parameters = parse_name_list(rhs, i)?,
                "__buffers__" => class.buffers = parse_name_list(rhs, i)?,
                "__forward_pre_hooks__" => class.forward_pre_hooks = Some(parse_name_list(rhs, i)?),
                "__forward_hooks__" => class.forward_hooks = Some(parse_name_list(rhs, i)?),
                _ if lhs.starts_with("__annotations__[") => {
                    let key = lhs["__annotations__[".len()..]
                        .strip_suffix(']')
                        .and_then(parse_string_literal)
                        .ok_or_else(|| err(i, "malformed __annotations__ key"))?;
                    class.attributes.push(AttributeDecl {
                        name: key,
                        ty: parse_type(rhs, i)?,
                    });
                }
                _ if lhs.contains(" : ") => {
                    let (n, t) = lhs.split_once(" : ").unwrap();
                    let ty = parse_type(t, i)?;
                    let ty = match ty {
                        TypeExpr::Generic(h, mut a) if h == "Final" && a.len() == 1 => a.remove(0),
                        other => other,
                    };
                    class.constants.push(ConstantDecl {
                        name: n.trim().to_string(),
                        ty,
                        literal: rhs.to_string(),
                    });
                }
                _ if is_identifier(lhs) => members.push((lhs.to_string(), rhs.to_string())),
                _ => return Err(err(i, format!("unexpected class item {item:?}"))),
            }
        } else if let Some((n, t)) = item.split_once(" : ") {
            if !is_identifier(n) {
                return Err(err(i, format!("invalid attribute name {n:?}")));
            }
            let ty = parse_type(t, i)?;
            if base == Some("NamedTuple") {
                fields.push((n.to_string(), ty));
            } else {
                class.attributes.push(AttributeDecl {
                    name: n.to_string(),
                    ty,
                });
            }
        } else {
            return Err(err(
                i,
                format!(
                    "unexpected class item {:?}",
                    item.chars().take(60).collect::<String>()
                ),
            ));
        }
        i += 1;
    }
    let def = match base {
        None | Some("Module") => Definition::Class(class),
        Some(b @ ("ModuleInterface" | "Interface")) => Definition::Interface(InterfaceDef {
            name: qname,
            is_module_interface: b == "ModuleInterface",
            methods: iface_methods,
        }),
        Some("NamedTuple") => Definition::NamedTuple(NamedTupleDef {
            name: qname,
            fields,
        }),
        Some("Enum") => Definition::Enum(EnumDef {
            name: qname,
            members,
        }),
        Some(other) => return Err(err(start, format!("unknown class base {other:?}"))),
    };
    Ok((def, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec_module() {
        let text = "class Linear(Module):\n  __parameters__ = [\"weight\", \"bias\", ]\n  __buffers__ = []\n  weight : Tensor\n  bias : Tensor\n  training : bool\n  _is_full_backward_hook : NoneType\n  in_features : Final[int] = 2\n  out_features : Final[int] = 2\n  def forward(self: __torch__.torch.nn.modules.linear.Linear,\n    input: Tensor) -> Tensor:\n    weight = self.weight\n    bias = self.bias\n    return torch.linear(input, weight, bias)\n";
        let defs = parse_source("__torch__.torch.nn.modules.linear", text).unwrap();
        let Definition::Class(c) = &defs[0] else {
            panic!()
        };
        assert_eq!(c.parameters, ["weight", "bias"]);
        assert_eq!(c.attributes.len(), 4);
        assert_eq!(c.constants.len(), 2);
        assert_eq!(c.methods[0].signature.params.len(), 2);
        assert!(c.methods[0].body.ends_with("bias)\n"));
    }

    #[test]
    fn errors_have_line_numbers_and_never_panic() {
        assert_eq!(
            parse_source("__torch__", "class A(Module):\n  x : List[int\n")
                .unwrap_err()
                .line,
            2
        );
        assert!(parse_source("__torch__", "def f(x: int) -> int\n  return x\n").is_err());
        let deep = format!("class A:\n  x : {}\n", "[".repeat(100_000));
        assert!(parse_source("__torch__", &deep).is_err());
        let mut s = 1u64;
        for _ in 0..2000 {
            let mut t = String::new();
            for _ in 0..(s % 80) {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                t.push(b"class def ():[],=\"'\\ \n#abc_0->"[(s >> 33) as usize % 30] as char);
            }
            let _ = parse_source("__torch__", &t);
        }
    }
}

/// Prints a type annotation as PyTorch does.
fn print_type(t: &TypeExpr) -> String {
    t.to_string()
}

fn print_param(p: &Param) -> String {
    let mut s = p.name.clone();
    if let Some(t) = &p.ty {
        s.push_str(": ");
        s.push_str(&print_type(t));
    }
    if let Some(d) = &p.default {
        s.push('=');
        s.push_str(d);
    }
    s
}

/// `def NAME(p0,\n    p1) -> RET:\n` with continuation lines indented `indent + 4`.
fn print_signature(out: &mut String, indent: &str, name: &str, sig: &Signature) {
    out.push_str(indent);
    out.push_str("def ");
    out.push_str(name);
    out.push('(');
    // Continuation lines are indented 4 spaces for methods and free functions alike.
    let cont = ",\n    ";
    out.push_str(
        &sig.params
            .iter()
            .map(print_param)
            .collect::<Vec<_>>()
            .join(cont),
    );
    out.push(')');
    if let Some(r) = &sig.returns {
        out.push_str(" -> ");
        out.push_str(&print_type(r));
    }
    out.push_str(":\n");
}

fn print_name_list(names: &[String]) -> String {
    let mut s = String::from("[");
    for n in names {
        s.push_str(&format_str_literal(n));
        s.push_str(", ");
    }
    s.push(']');
    s
}

/// Quotes a string as PyTorch's printer does: double quotes, C escapes, `\'` for single
/// quotes and 3-digit octal for other control characters.
pub fn format_str_literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\{:03o}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Prints definitions in PyTorch's text layout (`spec/code.md` §3). Method and function
/// bodies are emitted verbatim.
pub fn print_source(defs: &[&Definition]) -> String {
    let mut out = String::new();
    for d in defs {
        match d {
            Definition::Class(c) => {
                out.push_str("class ");
                out.push_str(c.name.name());
                out.push_str(if c.kind == ClassKind::Module {
                    "(Module):\n"
                } else {
                    ":\n"
                });
                if c.kind == ClassKind::Module {
                    out.push_str(&format!(
                        "  __parameters__ = {}\n",
                        print_name_list(&c.parameters)
                    ));
                    out.push_str(&format!(
                        "  __buffers__ = {}\n",
                        print_name_list(&c.buffers)
                    ));
                }
                if let Some(h) = &c.forward_pre_hooks {
                    out.push_str(&format!(
                        "  __forward_pre_hooks__ = {}\n",
                        print_name_list(h)
                    ));
                }
                if let Some(h) = &c.forward_hooks {
                    out.push_str(&format!("  __forward_hooks__ = {}\n", print_name_list(h)));
                }
                for a in &c.attributes {
                    if is_identifier(&a.name) {
                        out.push_str(&format!("  {} : {}\n", a.name, print_type(&a.ty)));
                    } else {
                        out.push_str(&format!(
                            "  __annotations__[{}] = {}\n",
                            format_str_literal(&a.name),
                            print_type(&a.ty)
                        ));
                    }
                }
                for k in &c.constants {
                    out.push_str(&format!(
                        "  {} : Final[{}] = {}\n",
                        k.name,
                        print_type(&k.ty),
                        k.literal
                    ));
                }
                for m in &c.methods {
                    print_signature(&mut out, "  ", &m.name, &m.signature);
                    out.push_str(&m.body);
                }
            }
            Definition::Interface(i) => {
                out.push_str(&format!(
                    "class {}({}):\n",
                    i.name.name(),
                    if i.is_module_interface {
                        "ModuleInterface"
                    } else {
                        "Interface"
                    }
                ));
                for (n, s) in &i.methods {
                    let params: Vec<String> = s.params.iter().map(print_param).collect();
                    out.push_str(&format!("  def {n}({})", params.join(", ")));
                    if let Some(r) = &s.returns {
                        out.push_str(&format!(" -> {}", print_type(r)));
                    }
                    out.push_str(":\n    pass\n");
                }
            }
            Definition::NamedTuple(n) => {
                out.push_str(&format!("class {}(NamedTuple):\n", n.name.name()));
                for (f, t) in &n.fields {
                    out.push_str(&format!("  {f} : {}\n", print_type(t)));
                }
            }
            Definition::Enum(e) => {
                out.push_str(&format!("class {}(Enum):\n", e.name.name()));
                for (m, v) in &e.members {
                    out.push_str(&format!("  {m} = {v}\n"));
                }
            }
            Definition::Function(f) => {
                print_signature(&mut out, "", &f.def.name, &f.def.signature);
                out.push_str(&f.def.body);
            }
        }
    }
    out
}

#[cfg(test)]
mod print_tests {
    use super::*;

    /// Every code file PyTorch wrote in the corpus re-prints byte for byte.
    #[test]
    fn corpus_code_files_reprint_identically() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let mut files = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "pt") {
                continue;
            }
            let mut z = zip::ZipArchive::new(std::fs::File::open(&p).unwrap()).unwrap();
            for i in 0..z.len() {
                let mut f = z.by_index(i).unwrap();
                let name = f.name().unwrap().to_string();
                let Some(rel) = name.split_once("/code/").map(|(_, r)| r.to_string()) else {
                    continue;
                };
                let Some(q) = rel.strip_suffix(".py") else {
                    continue;
                };
                let mut text = String::new();
                std::io::Read::read_to_string(&mut f, &mut text).unwrap();
                let defs = parse_source(&q.replace('/', "."), &text)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let refs: Vec<&Definition> = defs.iter().collect();
                assert_eq!(print_source(&refs), text, "{}: {name}", p.display());
                files += 1;
            }
        }
        assert!(files > 40, "only {files} code files found");
    }

    #[test]
    fn string_literals_round_trip() {
        for s in ["say \"hi\"\n\t\\ 'x' \u{1}", "é", ""] {
            assert_eq!(parse_string_literal(&format_str_literal(s)).unwrap(), s);
        }
        assert_eq!(format_str_literal("a'\u{1}"), "\"a\\'\\001\"");
    }
}

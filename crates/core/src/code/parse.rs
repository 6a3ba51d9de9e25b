//! The declaration parser for `code/*.py` files (code.md §4). Work is line-based and
//! linear: every line is looked at a bounded number of times, bracket tracking is
//! iterative, and only `TypeExpr::parse` and `parse_literal` recurse (both depth-limited).

use super::CodeError;
use super::lex::{Scan, balanced, find_top, identifier_len, is_identifier, read_string, split_top};
use super::literal::parse_literal;
use crate::model::{
    AttributeDecl, ClassDef, ClassKind, ConstantDecl, Definition, EnumDef, FunctionDef,
    InterfaceDef, MethodDef, NamedTupleDef, Param, QualifiedName, Signature, TypeExpr,
};

/// `line` is 0-based here; `CodeError` carries it 1-based.
fn err(line: usize, message: impl Into<String>) -> CodeError {
    CodeError {
        line: line + 1,
        message: message.into(),
    }
}

/// A short, quoted excerpt of a line for error messages.
fn excerpt(s: &str) -> String {
    let cut: String = s.trim().chars().take(60).collect();
    format!("{cut:?}")
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Lines PyTorch never writes but its own reader skips: empty, whitespace-only, comments.
fn is_ignorable(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

fn parse_type(text: &str, line: usize) -> Result<TypeExpr, CodeError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(err(line, "missing type"));
    }
    // Not `e.to_string()`: that quotes the whole (possibly huge) text.
    TypeExpr::parse(t).map_err(|e| {
        err(
            line,
            format!(
                "invalid type {} at column {}: {}",
                excerpt(t),
                e.column + 1,
                e.message
            ),
        )
    })
}

/// Checks the text of a constant or enum value. The text is kept as written; it must be a
/// literal, or an expression PyTorch prints in its place (`CONSTANTS.c0`,
/// `torch.device("cpu")`): a name followed by balanced text.
fn literal_text(text: &str, line: usize) -> Result<String, CodeError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(err(line, "missing value"));
    }
    let name_like = t.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') && balanced(t);
    if !name_like && let Err(e) = parse_literal(t) {
        return Err(err(line, e.message));
    }
    Ok(t.to_string())
}

/// The file's lines: each with its `\n` (if any) and without.
struct Lines<'a> {
    raw: Vec<&'a str>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            raw: text.split_inclusive('\n').collect(),
        }
    }

    fn len(&self) -> usize {
        self.raw.len()
    }

    /// Line `i` without its line terminator.
    fn get(&self, i: usize) -> &'a str {
        let l = self.raw[i];
        l.strip_suffix('\n').unwrap_or(l)
    }
}

/// Parses one code file into its declarations. `qualifier` is the dotted name the file
/// stands for (`__torch__.pkgx.mods` for `code/__torch__/pkgx/mods.py`); definitions are
/// named `qualifier.NAME`. Method bodies are kept as opaque text.
///
/// Tolerated beyond what PyTorch writes (as its own reader does): blank and `#` lines
/// between declarations, header items in any order, one-line or multi-line signatures,
/// trailing commas, single-quoted strings, and any literal text for a `Final[float]`
/// (PyTorch itself writes `10000000000000000` there). These do not survive re-printing.
pub fn parse_source(qualifier: &str, text: &str) -> Result<Vec<Definition>, CodeError> {
    let lines = Lines::new(text);
    let mut defs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines.get(i);
        if is_ignorable(l) {
            i += 1;
            continue;
        }
        if indent(l) != 0 || l.starts_with('\t') {
            return Err(err(i, "unexpected indentation: expected `class` or `def`"));
        }
        if l.starts_with("def ") {
            let (def, next) = parse_def(&lines, i, 0)?;
            let name = QualifiedName::join(qualifier, &def.name);
            defs.push(Definition::Function(FunctionDef { name, def }));
            i = next;
        } else if let Some(rest) = l.strip_prefix("class ") {
            let (def, next) = parse_class(qualifier, rest, &lines, i)?;
            defs.push(def);
            i = next;
        } else {
            return Err(err(
                i,
                format!("expected `class` or `def`, found {}", excerpt(l)),
            ));
        }
    }
    Ok(defs)
}

/// Reads a `def` whose first line is `start`, indented `ind` (0 for functions, 2 for methods).
/// The signature runs to the first line ending in `:` outside brackets and strings
/// (continuation lines are indented more than `ind`); the body is every following line
/// indented more than `ind` (blank lines included). Returns the method and the next line.
fn parse_def(lines: &Lines, start: usize, ind: usize) -> Result<(MethodDef, usize), CodeError> {
    // The signature with lines joined by a space, and where each line starts in it.
    let mut sig = String::new();
    let mut line_starts: Vec<(usize, usize)> = Vec::new();
    let mut scan = Scan::default();
    let mut i = start;
    loop {
        if i >= lines.len() {
            return Err(err(start, "the signature does not end with `:`"));
        }
        let l = lines.get(i);
        if i > start {
            if is_ignorable(l) || indent(l) <= ind {
                return Err(err(start, "the signature does not end with `:`"));
            }
            sig.push(' ');
        }
        let piece = l.trim();
        line_starts.push((sig.len(), i));
        sig.push_str(piece);
        piece.chars().for_each(|c| scan.feed(c));
        if let Some(c) = scan.bad_close {
            return Err(err(i, format!("unbalanced `{c}`")));
        }
        if scan.in_string() {
            return Err(err(i, "unterminated string literal"));
        }
        i += 1;
        if scan.depth() == 0 && piece.ends_with(':') {
            break;
        }
    }
    let line_of = |offset: usize| {
        let k = line_starts.partition_point(|&(o, _)| o <= offset);
        line_starts[k.saturating_sub(1)].1
    };
    let (name, signature) = parse_signature(&sig, &line_of)?;

    let body_start = i;
    let mut has_code = false;
    while i < lines.len() {
        let l = lines.get(i);
        if l.trim().is_empty() {
            i += 1;
        } else if indent(l) > ind {
            has_code = true;
            i += 1;
        } else {
            break;
        }
    }
    if !has_code {
        return Err(err(start, format!("`def {name}` has no body")));
    }
    let body = lines.raw[body_start..i].concat();
    Ok((
        MethodDef {
            name,
            signature,
            body,
        },
        i,
    ))
}

/// Parses `def NAME(PARAMS) [-> TYPE]:` (already joined into one line).
fn parse_signature(
    sig: &str,
    line_of: &dyn Fn(usize) -> usize,
) -> Result<(String, Signature), CodeError> {
    let rest = sig
        .strip_prefix("def ")
        .ok_or_else(|| err(line_of(0), "expected `def`"))?;
    let name_start = sig.len() - rest.trim_start().len();
    let rest = rest.trim_start();
    let name_len = identifier_len(rest);
    if name_len == 0 {
        return Err(err(line_of(0), "expected a function name after `def`"));
    }
    let name = rest[..name_len].to_string();
    let after_name = rest[name_len..].trim_start();
    let open = sig.len() - after_name.len();
    if !after_name.starts_with('(') {
        return Err(err(
            line_of(name_start),
            format!("expected `(` after `def {name}`"),
        ));
    }
    // The matching `)`: the first `)` at depth 0 inside the parentheses.
    let inner = &sig[open + 1..];
    let close = find_top(inner, ')')
        .ok_or_else(|| err(line_of(open), "unbalanced `(` in the signature"))?;
    let params_text = &inner[..close];
    let params_offset = open + 1;
    let tail_offset = params_offset + close + 1;
    let tail = sig[tail_offset..].trim();
    let before_colon = tail
        .strip_suffix(':')
        .ok_or_else(|| err(line_of(tail_offset), "the signature does not end with `:`"))?
        .trim();
    let returns = if before_colon.is_empty() {
        None
    } else {
        let ret = before_colon.strip_prefix("->").ok_or_else(|| {
            err(
                line_of(tail_offset),
                format!("expected `->` or `:`, found {}", excerpt(before_colon)),
            )
        })?;
        Some(parse_type(ret, line_of(tail_offset))?)
    };

    let mut params = Vec::new();
    let pieces = split_top(params_text, ',');
    let count = pieces.len();
    for (k, (offset, piece)) in pieces.into_iter().enumerate() {
        let lead = piece.len() - piece.trim_start().len();
        let line = line_of(params_offset + offset + lead);
        if piece.trim().is_empty() {
            // `f()` and a trailing comma `f(a, )` are fine; `f(a, , b)` is not.
            if (k == 0 && count == 1) || (k == count - 1 && k > 0) {
                continue;
            }
            return Err(err(line, "empty parameter"));
        }
        params.push(parse_param(piece, line)?);
    }
    Ok((name, Signature { params, returns }))
}

/// `NAME [: TYPE] [= DEFAULT]`; also a bare `*` (keyword-only marker).
fn parse_param(text: &str, line: usize) -> Result<Param, CodeError> {
    let text = text.trim();
    let (head, default) = match find_top(text, '=') {
        Some(i) => {
            let d = text[i + 1..].trim();
            if d.is_empty() {
                return Err(err(line, "missing default value after `=`"));
            }
            (text[..i].trim(), Some(d.to_string()))
        }
        None => (text, None),
    };
    let (name, ty) = match head.split_once(':') {
        Some((n, t)) => (n.trim(), Some(parse_type(t, line)?)),
        None => (head, None),
    };
    let bare_star = name == "*" && ty.is_none() && default.is_none();
    if !is_identifier(name) && !bare_star {
        return Err(err(
            line,
            format!("invalid parameter name {}", excerpt(name)),
        ));
    }
    Ok(Param {
        name: name.to_string(),
        ty,
        default,
    })
}

/// One header line of a class body (everything but methods).
enum Item {
    Names(NameList, Vec<String>),
    /// `NAME : TYPE` or `__annotations__["NAME"] = TYPE`.
    Attribute(String, TypeExpr),
    /// `NAME : Final[TYPE] = VALUE` (the type without `Final`).
    Constant(String, TypeExpr, String),
    /// `NAME = VALUE`.
    Member(String, String),
    /// `__annotations__ = []`: PyTorch prints it before the class's first attribute when
    /// that one needs the `__annotations__["NAME"]` form (a frozen `ModuleList`, whose
    /// plain attributes freezing removed). It declares nothing.
    AnnotationsInit,
}

#[derive(Clone, Copy, PartialEq)]
enum NameList {
    Parameters,
    Buffers,
    ForwardPreHooks,
    ForwardHooks,
}

impl NameList {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "__parameters__" => NameList::Parameters,
            "__buffers__" => NameList::Buffers,
            "__forward_pre_hooks__" => NameList::ForwardPreHooks,
            "__forward_hooks__" => NameList::ForwardHooks,
            _ => return None,
        })
    }
}

/// `["a", "b", ]` (trailing comma optional), or `[]`.
fn parse_name_list(text: &str, line: usize) -> Result<Vec<String>, CodeError> {
    let t = text.trim();
    let mut rest = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| err(line, "expected a list of names like `[\"a\", ]`"))?
        .trim_start();
    let mut names = Vec::new();
    while !rest.is_empty() {
        let (name, used) = read_string(rest).map_err(|m| err(line, m))?;
        names.push(name);
        rest = rest[used..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(err(line, "expected `,` between names"));
        }
    }
    Ok(names)
}

fn parse_item(item: &str, line: usize) -> Result<Item, CodeError> {
    let name_len = identifier_len(item);
    if name_len == 0 {
        return Err(err(
            line,
            format!("unexpected class item {}", excerpt(item)),
        ));
    }
    let name = &item[..name_len];
    let rest = item[name_len..].trim_start();
    if name == "__annotations__"
        && rest
            .strip_prefix('=')
            .is_some_and(|r| r.trim().strip_prefix('[').is_some_and(|r| r.trim() == "]"))
    {
        return Ok(Item::AnnotationsInit);
    }
    if name == "__annotations__"
        && let Some(r) = rest.strip_prefix('[')
    {
        let (key, used) = read_string(r).map_err(|m| err(line, m))?;
        let ty = r[used..]
            .trim_start()
            .strip_prefix(']')
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix('='))
            .ok_or_else(|| err(line, "expected `__annotations__[\"NAME\"] = TYPE`"))?;
        return Ok(Item::Attribute(key, parse_type(ty, line)?));
    }
    if let Some(r) = rest.strip_prefix(':') {
        let Some(eq) = find_top(r, '=') else {
            return Ok(Item::Attribute(name.into(), parse_type(r, line)?));
        };
        // A constant (or member, below) cannot be named after a keyword: unlike an
        // attribute (`__annotations__["def"] = T`) it has no spelling that reads back.
        if crate::code::lex::is_keyword(name) {
            return Err(err(
                line,
                format!("constant named after the keyword `{name}`"),
            ));
        }
        let ty = parse_type(&r[..eq], line)?;
        let value = literal_text(&r[eq + 1..], line)?;
        return match ty {
            TypeExpr::Generic(head, mut args) if head == "Final" && args.len() == 1 => {
                Ok(Item::Constant(name.into(), args.remove(0), value))
            }
            _ => Err(err(
                line,
                format!("class attribute `{name}` has a value but is not `Final`"),
            )),
        };
    }
    if let Some(r) = rest.strip_prefix('=') {
        if let Some(which) = NameList::from_name(name) {
            return Ok(Item::Names(which, parse_name_list(r, line)?));
        }
        if crate::code::lex::is_keyword(name) {
            return Err(err(
                line,
                format!("class member named after the keyword `{name}`"),
            ));
        }
        return Ok(Item::Member(name.into(), literal_text(r, line)?));
    }
    Err(err(
        line,
        format!("expected `{name} : TYPE` or `{name} = VALUE`"),
    ))
}

#[derive(Clone, Copy, PartialEq)]
enum Base {
    None,
    Module,
    ModuleInterface,
    Interface,
    NamedTuple,
    Enum,
}

fn parse_class(
    qualifier: &str,
    header: &str,
    lines: &Lines,
    start: usize,
) -> Result<(Definition, usize), CodeError> {
    let h = header
        .trim_end()
        .strip_suffix(':')
        .ok_or_else(|| err(start, "the class line must end with `:`"))?;
    let (name, base) = match h.split_once('(') {
        Some((n, b)) => {
            let b = b
                .strip_suffix(')')
                .ok_or_else(|| err(start, "expected `)` after the base class"))?;
            let base = match b.trim() {
                "Module" => Base::Module,
                "ModuleInterface" => Base::ModuleInterface,
                "Interface" => Base::Interface,
                "NamedTuple" => Base::NamedTuple,
                "Enum" => Base::Enum,
                other => {
                    return Err(err(
                        start,
                        format!(
                            "unknown base class {} (PyTorch 2.15 loads the file while no value uses the class: it compiles classes when used)",
                            excerpt(other)
                        ),
                    ));
                }
            };
            (n.trim(), base)
        }
        None => (h.trim(), Base::None),
    };
    if !is_identifier(name) {
        return Err(err(start, format!("invalid class name {}", excerpt(name))));
    }
    let qname = QualifiedName::join(qualifier, name);
    let kind_name = match base {
        Base::None => "a script class",
        Base::Module => "a module",
        Base::ModuleInterface | Base::Interface => "an interface",
        Base::NamedTuple => "a NamedTuple",
        Base::Enum => "an enum",
    };
    let not_allowed =
        |line: usize, what: &str| err(line, format!("{what} is not allowed in {kind_name}"));

    let kind = if base == Base::Module {
        ClassKind::Module
    } else {
        ClassKind::Class
    };
    let mut class = ClassDef::new(qname.clone(), kind);
    let mut interface_methods = Vec::new();
    let mut fields = Vec::new();
    let mut members = Vec::new();
    let mut seen_lists = Vec::new();
    let mut i = start + 1;
    while i < lines.len() {
        let l = lines.get(i);
        if is_ignorable(l) {
            i += 1;
            continue;
        }
        let ind = indent(l);
        if ind == 0 && !l.starts_with('\t') {
            break;
        }
        if ind != 2 || l[2..].starts_with('\t') {
            return Err(err(
                i,
                "class items must be indented by exactly 2 spaces, as PyTorch writes them (PyTorch 2.15 loads other consistent indentation, tabs included)",
            ));
        }
        let item = &l[2..];
        if item.starts_with("def ") {
            let (m, next) = parse_def(lines, i, 2)?;
            match base {
                Base::None | Base::Module => class.methods.push(m),
                Base::ModuleInterface | Base::Interface => {
                    // Interface bodies are `pass`; only the signature matters.
                    interface_methods.push((m.name, m.signature))
                }
                Base::NamedTuple | Base::Enum => return Err(not_allowed(i, "a method")),
            }
            i = next;
            continue;
        }
        match (parse_item(item, i)?, base) {
            (Item::Names(which, names), Base::Module) => {
                if seen_lists.contains(&which) {
                    return Err(err(i, "duplicate name list"));
                }
                seen_lists.push(which);
                match which {
                    NameList::Parameters => class.parameters = names,
                    NameList::Buffers => class.buffers = names,
                    NameList::ForwardPreHooks => class.forward_pre_hooks = Some(names),
                    NameList::ForwardHooks => class.forward_hooks = Some(names),
                }
            }
            (Item::Attribute(n, ty), Base::None | Base::Module) => {
                class.attributes.push(AttributeDecl { name: n, ty })
            }
            // A field named after a keyword (`def: int`) would print as a method header.
            (Item::Attribute(n, ty), Base::NamedTuple)
                if is_identifier(&n) && !crate::code::lex::is_keyword(&n) =>
            {
                fields.push((n, ty))
            }
            (Item::Constant(n, ty, literal), Base::None | Base::Module) => {
                class.constants.push(ConstantDecl {
                    name: n,
                    ty,
                    literal,
                })
            }
            (Item::Member(n, v), Base::Enum) => members.push((n, v)),
            (Item::AnnotationsInit, Base::None | Base::Module) => {}
            (Item::Names(..), _) => return Err(not_allowed(i, "a name list")),
            (Item::Attribute(..), _) => return Err(not_allowed(i, "this attribute")),
            (Item::Constant(..), _) => return Err(not_allowed(i, "a constant")),
            (Item::Member(..) | Item::AnnotationsInit, _) => {
                return Err(not_allowed(i, "an assignment"));
            }
        }
        i += 1;
    }
    let def = match base {
        Base::None | Base::Module => Definition::Class(class),
        Base::ModuleInterface | Base::Interface => Definition::Interface(InterfaceDef {
            name: qname,
            is_module_interface: base == Base::ModuleInterface,
            methods: interface_methods,
        }),
        Base::NamedTuple => Definition::NamedTuple(NamedTupleDef {
            name: qname,
            fields,
        }),
        Base::Enum => Definition::Enum(EnumDef {
            name: qname,
            members,
        }),
    };
    Ok((def, i))
}

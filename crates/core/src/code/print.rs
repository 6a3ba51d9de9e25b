//! The printer: declarations in PyTorch's exact text layout (code.md §3).

use std::fmt::Write;

use super::lex::is_identifier;
use super::literal::format_str_literal;
use crate::model::{ClassDef, ClassKind, Definition, MethodDef, Param, Signature};

/// Prints definitions as one code file. Method and function bodies are emitted verbatim
/// (they carry their own indentation and `\n`). Interfaces are printed as the model has
/// them: PyTorch's own interfaces have an unannotated `self` and no defaults.
pub fn print_source(defs: &[&Definition]) -> String {
    let mut out = String::new();
    for d in defs {
        match d {
            Definition::Class(c) => print_class(&mut out, c),
            Definition::Interface(i) => {
                let base = if i.is_module_interface {
                    "ModuleInterface"
                } else {
                    "Interface"
                };
                let _ = writeln!(out, "class {}({base}):", i.name.name());
                for (name, sig) in &i.methods {
                    let params: Vec<String> = sig.params.iter().map(param).collect();
                    let _ = write!(out, "  def {name}({})", params.join(", "));
                    returns(&mut out, sig);
                    out.push_str(":\n    pass\n");
                }
            }
            Definition::NamedTuple(n) => {
                let _ = writeln!(out, "class {}(NamedTuple):", n.name.name());
                for (f, t) in &n.fields {
                    let _ = writeln!(out, "  {f} : {t}");
                }
            }
            Definition::Enum(e) => {
                let _ = writeln!(out, "class {}(Enum):", e.name.name());
                for (m, v) in &e.members {
                    let _ = writeln!(out, "  {m} = {v}");
                }
            }
            Definition::Function(f) => method(&mut out, "", &f.def.name, &f.def),
        }
    }
    out
}

fn print_class(out: &mut String, c: &ClassDef) {
    let name = c.name.name();
    if c.kind == ClassKind::Module {
        let _ = writeln!(out, "class {name}(Module):");
        name_list(out, "__parameters__", &c.parameters);
        name_list(out, "__buffers__", &c.buffers);
    } else {
        let _ = writeln!(out, "class {name}:");
    }
    if let Some(h) = &c.forward_pre_hooks {
        name_list(out, "__forward_pre_hooks__", h);
    }
    if let Some(h) = &c.forward_hooks {
        name_list(out, "__forward_hooks__", h);
    }
    for (i, a) in c.attributes.iter().enumerate() {
        if is_identifier(&a.name) && !super::lex::is_keyword(&a.name) {
            let _ = writeln!(out, "  {} : {}", a.name, a.ty);
        } else {
            if i == 0 {
                // PyTorch creates the annotations dict when the first attribute needs it.
                out.push_str("  __annotations__ = []\n");
            }
            let key = format_str_literal(&a.name);
            let _ = writeln!(out, "  __annotations__[{key}] = {}", a.ty);
        }
    }
    for k in &c.constants {
        let _ = writeln!(out, "  {} : Final[{}] = {}", k.name, k.ty, k.literal);
    }
    for m in &c.methods {
        method(out, "  ", &m.name, m);
    }
}

/// `  __parameters__ = ["weight", "bias", ]` (`[]` when empty).
fn name_list(out: &mut String, list: &str, names: &[String]) {
    let _ = write!(out, "  {list} = [");
    for n in names {
        out.push_str(&format_str_literal(n));
        out.push_str(", ");
    }
    out.push_str("]\n");
}

fn param(p: &Param) -> String {
    let mut s = p.name.clone();
    if let Some(t) = &p.ty {
        let _ = write!(s, ": {t}");
    }
    if let Some(d) = &p.default {
        let _ = write!(s, "={d}");
    }
    s
}

fn returns(out: &mut String, sig: &Signature) {
    if let Some(r) = &sig.returns {
        let _ = write!(out, " -> {r}");
    }
}

/// The first parameter on the `def` line, each further one on its own line indented 4
/// spaces (methods and free functions alike), then the body verbatim.
fn method(out: &mut String, indent: &str, name: &str, m: &MethodDef) {
    let _ = write!(out, "{indent}def {name}(");
    for (i, p) in m.signature.params.iter().enumerate() {
        if i > 0 {
            out.push_str(",\n    ");
        }
        out.push_str(&param(p));
    }
    out.push(')');
    returns(out, &m.signature);
    out.push_str(":\n");
    out.push_str(&m.body);
}

//! Building script modules in Rust and combining loaded ones, the way Python code does
//! with `torch.jit.script` over modules that hold `torch.jit.load`ed submodules.
//!
//! Types keep the names they had in their own compilation unit. When two distinct types
//! with one name end up in one unit, the later one is keyed `NAME#k` ([`KEY_SEPARATOR`]);
//! the save-time uniquer turns keys into PyTorch's `___torch_mangle_N` names.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;

use super::mangle::KEY_SEPARATOR;
use super::{
    AttributeDecl, ClassDef, ClassKind, CompilationUnit, Definition, IValue, MethodDef, Object,
    ObjectState, QualifiedName, ScriptModule, Signature, Str, TypeExpr,
};

/// A renaming of qualified names (original → key in the combined unit).
pub type Renames = HashMap<QualifiedName, QualifiedName>;

fn rename_name(n: &QualifiedName, r: &Renames) -> QualifiedName {
    r.get(n).cloned().unwrap_or_else(|| n.clone())
}

/// `t` with every qualified name in `r` replaced by its new name.
pub fn rename_type(t: &TypeExpr, r: &Renames) -> TypeExpr {
    match t {
        TypeExpr::Name(n) => TypeExpr::Name(
            rename_name(&QualifiedName::new(n.clone()), r)
                .as_str()
                .to_string(),
        ),
        TypeExpr::Generic(h, a) => {
            TypeExpr::Generic(h.clone(), a.iter().map(|t| rename_type(t, r)).collect())
        }
        TypeExpr::EmptyTuple => TypeExpr::EmptyTuple,
    }
}

fn rename_signature(s: &Signature, r: &Renames) -> Signature {
    let mut s = s.clone();
    for p in &mut s.params {
        p.ty = p.ty.as_ref().map(|t| rename_type(t, r));
    }
    s.returns = s.returns.as_ref().map(|t| rename_type(t, r));
    s
}

/// Calls `f` for each dotted `__torch__...` token outside string literals (with its byte
/// range), and returns the text with each token replaced by `f`'s answer if any.
fn map_tokens(text: &str, mut f: impl FnMut(&str) -> Option<String>) -> String {
    let bytes = text.as_bytes();
    let is_tok = |c: char| c.is_alphanumeric() || c == '_' || c == '.' || c == KEY_SEPARATOR;
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = quote {
            if c == b'\\' && i + 1 < bytes.len() {
                let n = 1 + text[i + 1..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&text[i..i + n]);
                i += n;
                continue;
            }
            if c == q {
                quote = None;
            }
        } else if text[i..].starts_with("__torch__")
            && (i == 0 || !text[..i].chars().next_back().is_some_and(is_tok))
        {
            let end = text[i..]
                .find(|ch: char| !is_tok(ch))
                .map_or(text.len(), |e| i + e);
            let token = text[i..end].trim_end_matches('.');
            out.push_str(&f(token).unwrap_or_else(|| token.to_string()));
            i += token.len();
            continue;
        } else if c == b'"' || c == b'\'' {
            quote = Some(c);
        }
        let n = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + n]);
        i += n;
    }
    out
}

/// Dotted `__torch__...` tokens of code text (calls, constructors, enum members such as
/// `__torch__.Color.RED`), outside string literals, in order.
pub fn qualified_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    map_tokens(text, |t| {
        out.push(t.to_string());
        None
    });
    out
}

/// Rewrites qualified names inside opaque code text. For each token the longest dotted
/// prefix that `lookup` renames wins (so `__torch__.Color.RED` follows `__torch__.Color`).
pub fn rename_text(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    map_tokens(text, |token| {
        let atoms: Vec<&str> = token.split('.').collect();
        (2..=atoms.len()).rev().find_map(|k| {
            let prefix = atoms[..k].join(".");
            lookup(&prefix).map(|new| format!("{new}{}", &token[prefix.len()..]))
        })
    })
}

fn rename_method(m: &MethodDef, r: &Renames) -> MethodDef {
    let lookup = |s: &str| {
        r.get(&QualifiedName::new(s))
            .map(|q| q.as_str().to_string())
    };
    MethodDef {
        name: m.name.clone(),
        signature: rename_signature(&m.signature, r),
        body: rename_text(&m.body, &lookup),
    }
}

/// Applies `r` to every name a definition declares or mentions.
pub fn rename_definition(d: &Definition, r: &Renames) -> Definition {
    match d {
        Definition::Class(c) => {
            let mut c = c.clone();
            c.name = rename_name(&c.name, r);
            for a in &mut c.attributes {
                a.ty = rename_type(&a.ty, r);
            }
            for k in &mut c.constants {
                k.ty = rename_type(&k.ty, r);
            }
            c.methods = c.methods.iter().map(|m| rename_method(m, r)).collect();
            Definition::Class(c)
        }
        Definition::Interface(i) => {
            let mut i = i.clone();
            i.name = rename_name(&i.name, r);
            i.methods = i
                .methods
                .iter()
                .map(|(n, s)| (n.clone(), rename_signature(s, r)))
                .collect();
            Definition::Interface(i)
        }
        Definition::NamedTuple(n) => {
            let mut n = n.clone();
            n.name = rename_name(&n.name, r);
            for (_, t) in &mut n.fields {
                *t = rename_type(t, r);
            }
            Definition::NamedTuple(n)
        }
        Definition::Enum(e) => {
            let mut e = e.clone();
            e.name = rename_name(&e.name, r);
            Definition::Enum(e)
        }
        Definition::Function(f) => {
            let mut f = f.clone();
            f.name = rename_name(&f.name, r);
            f.def = rename_method(&f.def, r);
            Definition::Function(f)
        }
    }
}

/// Rebuilds a value graph with class and enum names renamed, keeping sharing.
pub fn rename_value(v: &IValue, r: &Renames, memo: &mut HashMap<usize, IValue>) -> IValue {
    if r.is_empty() {
        return v.clone();
    }
    if let Some(done) = v.identity().and_then(|id| memo.get(&id)) {
        return done.clone();
    }
    let out = match v {
        IValue::Object(o) => {
            let state = match &o.state {
                ObjectState::Attributes(a) => ObjectState::Attributes(
                    a.iter()
                        .map(|(n, v)| (n.clone(), rename_value(v, r, memo)))
                        .collect(),
                ),
                ObjectState::SetState(s) => ObjectState::SetState(rename_value(s, r, memo)),
            };
            IValue::Object(Arc::new(Object {
                class: rename_name(&o.class, r),
                state,
            }))
        }
        IValue::Enum(e) => IValue::Enum(Arc::new(super::EnumValue {
            enum_type: rename_name(&e.enum_type, r),
            value: e.value.clone(),
        })),
        IValue::Tuple(t) => IValue::Tuple(Arc::new(super::Tuple {
            items: t.items.iter().map(|v| rename_value(v, r, memo)).collect(),
            named: t.named.as_ref().map(|n| rename_name(n, r)),
        })),
        IValue::List(l) => IValue::List(Arc::new(super::List {
            elem_type: rename_type(&l.elem_type, r),
            items: l.items.iter().map(|v| rename_value(v, r, memo)).collect(),
        })),
        IValue::Dict(d) => IValue::Dict(Arc::new(super::Dict {
            key_type: rename_type(&d.key_type, r),
            value_type: rename_type(&d.value_type, r),
            entries: d
                .entries
                .iter()
                .map(|(k, v)| (rename_value(k, r, memo), rename_value(v, r, memo)))
                .collect(),
        })),
        other => other.clone(),
    };
    if let Some(id) = v.identity() {
        memo.insert(id, out.clone());
    }
    out
}

/// Builds one new module class and its instance, possibly holding loaded modules.
pub struct ModuleBuilder {
    class: ClassDef,
    attrs: Vec<(Str, IValue)>,
    cu: CompilationUnit,
    /// Definitions besides the class itself, in the order added.
    extra_defs: Vec<Definition>,
}

impl ModuleBuilder {
    /// A module class `name` with the two attributes every scripted `nn.Module` has
    /// (`training`, `_is_full_backward_hook`).
    pub fn new(name: &str) -> Self {
        let mut b = ModuleBuilder {
            class: ClassDef::new(QualifiedName::new(name), ClassKind::Module),
            attrs: Vec::new(),
            cu: CompilationUnit::new(),
            extra_defs: Vec::new(),
        };
        b.attribute("training", TypeExpr::name("bool"), IValue::Bool(true));
        b.attribute(
            "_is_full_backward_hook",
            TypeExpr::Generic("Optional".into(), vec![TypeExpr::name("bool")]),
            IValue::None,
        );
        b
    }

    /// The class being built, to edit directly (hooks, constants, ...).
    pub fn class_mut(&mut self) -> &mut ClassDef {
        &mut self.class
    }

    /// Adds an attribute slot of type `ty` holding `value`.
    pub fn attribute(&mut self, name: &str, ty: TypeExpr, value: IValue) -> &mut Self {
        self.class.attributes.push(AttributeDecl {
            name: name.into(),
            ty,
        });
        self.attrs.push((Str::from(name), value));
        self
    }

    /// Adds a `Tensor` attribute listed in `__parameters__`.
    pub fn parameter(&mut self, name: &str, value: IValue) -> &mut Self {
        self.class.parameters.push(name.into());
        self.attribute(name, TypeExpr::name("Tensor"), value)
    }

    /// Adds a `Tensor` attribute listed in `__buffers__`.
    pub fn buffer(&mut self, name: &str, value: IValue) -> &mut Self {
        self.class.buffers.push(name.into());
        self.attribute(name, TypeExpr::name("Tensor"), value)
    }

    /// Adds a method given as TorchScript text (`def ...` at column 0, body indented 2).
    pub fn method_source(&mut self, text: &str) -> Result<&mut Self, crate::code::CodeError> {
        for d in crate::code::parse_source("__torch__", text)? {
            if let Definition::Function(f) = d {
                let body: String = f.def.body.lines().map(|l| format!("  {l}\n")).collect();
                self.class.methods.push(MethodDef { body, ..f.def });
            }
        }
        Ok(self)
    }

    /// Adds another definition (function, NamedTuple, ...) of this unit.
    pub fn define(&mut self, d: Definition) -> &mut Self {
        self.extra_defs.push(d);
        self
    }

    /// `self.add_module(name, child)` with `child` a module from another compilation unit
    /// (e.g. `torch.jit.load`ed). Its types join this unit; a name already taken by a
    /// different type is keyed `NAME#k`, as PyTorch keeps them distinct types.
    pub fn submodule(&mut self, name: &str, child: &ScriptModule) -> &mut Self {
        let mut renames = Renames::new();
        for d in child.cu.definitions() {
            let n = d.name().clone();
            if self.taken(&n) {
                let mut k = 1;
                let key = loop {
                    let key = QualifiedName::new(format!("{n}{KEY_SEPARATOR}{k}"));
                    if !self.taken(&key) && !renames.values().any(|v| v == &key) {
                        break key;
                    }
                    k += 1;
                };
                renames.insert(n, key);
            }
        }
        for d in child.cu.definitions() {
            let d = rename_definition(d, &renames);
            let _ = self.cu.define(d);
        }
        let root = rename_value(
            &IValue::Object(child.root.clone()),
            &renames,
            &mut HashMap::new(),
        );
        let ty = match &root {
            IValue::Object(o) => o.class.clone(),
            _ => unreachable!("a module root is an object"),
        };
        self.attribute(name, TypeExpr::Name(ty.as_str().to_string()), root)
    }

    fn taken(&self, n: &QualifiedName) -> bool {
        self.cu.get(n).is_some()
            || &self.class.name == n
            || self.extra_defs.iter().any(|d| d.name() == n)
    }

    /// The module: the class and the other definitions in one new compilation unit, the
    /// instance as its root (no constants, no extra files).
    pub fn build(self) -> ScriptModule {
        let mut cu = self.cu;
        let _ = cu.define(Definition::Class(self.class.clone()));
        for d in self.extra_defs {
            let _ = cu.define(d);
        }
        ScriptModule {
            root: Arc::new(Object {
                class: self.class.name.clone(),
                state: ObjectState::Attributes(self.attrs),
            }),
            cu: Arc::new(cu),
            constants: Vec::new(),
            extra_files: IndexMap::new(),
            memoized: None,
        }
    }
}

/// A module whose types are given as TorchScript declarations (what `torch.jit.script`
/// would have compiled), one `(qualifier, text)` per code file, and whose state is `root`.
pub fn module_from_source(
    sources: &[(&str, &str)],
    root: Arc<Object>,
) -> Result<ScriptModule, crate::code::CodeError> {
    let mut cu = CompilationUnit::new();
    for (qualifier, text) in sources {
        for d in crate::code::parse_source(qualifier, text)? {
            let _ = cu.define(d);
        }
    }
    Ok(ScriptModule {
        root,
        cu: Arc::new(cu),
        constants: Vec::new(),
        extra_files: IndexMap::new(),
        memoized: None,
    })
}

/// An object of `class` with attributes in slot order.
pub fn object(class: &str, attrs: Vec<(&str, IValue)>) -> Arc<Object> {
    Arc::new(Object {
        class: QualifiedName::new(class),
        state: ObjectState::Attributes(attrs.into_iter().map(|(n, v)| (Str::from(n), v)).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_renaming_takes_longest_known_prefix_and_skips_strings() {
        let mut r = Renames::new();
        r.insert("__torch__.Color".into(), "__torch__.Color#1".into());
        r.insert("__torch__.lol".into(), "__torch__.lol#1".into());
        let lookup = |s: &str| {
            r.get(&QualifiedName::new(s))
                .map(|q| q.as_str().to_string())
        };
        assert_eq!(
            rename_text(
                "x = __torch__.Color.RED\n  y = __torch__.lol(x, )\n  s = \"__torch__.lol\"\n",
                &lookup
            ),
            "x = __torch__.Color#1.RED\n  y = __torch__.lol#1(x, )\n  s = \"__torch__.lol\"\n"
        );
        assert_eq!(
            rename_text("a__torch__.lol ü __torch__.other", &lookup),
            "a__torch__.lol ü __torch__.other"
        );
    }
}

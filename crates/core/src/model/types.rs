//! Named types and declarations: what the `code/` files declare (and the flatbuffer's
//! `jit_sources` carry), independent of how they were stored.

use std::fmt;

/// The prefix PyTorch inserts to make a qualified name unique (`___torch_mangle_N`).
pub const MANGLE_PREFIX: &str = "___torch_mangle_";

/// A dotted qualified name such as `__torch__.torch.nn.modules.linear.Linear`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualifiedName(String);

impl QualifiedName {
    /// The name `s`, taken as it is (not checked).
    pub fn new(s: impl Into<String>) -> Self {
        QualifiedName(s.into())
    }

    /// Joins a qualifier and a last atom (`__torch__` + `M`).
    pub fn join(qualifier: &str, name: &str) -> Self {
        if qualifier.is_empty() {
            QualifiedName(name.to_string())
        } else {
            QualifiedName(format!("{qualifier}.{name}"))
        }
    }

    /// The dotted name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Everything before the last atom (`__torch__.torch.nn.modules.linear`).
    pub fn qualifier(&self) -> &str {
        self.0.rsplit_once('.').map(|(q, _)| q).unwrap_or("")
    }

    /// The last atom (`Linear`).
    pub fn name(&self) -> &str {
        self.0.rsplit_once('.').map(|(_, n)| n).unwrap_or(&self.0)
    }

    /// The dot-separated atoms, first to last.
    pub fn atoms(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// The mangle number if some atom carries `___torch_mangle_N`.
    pub fn mangle_number(&self) -> Option<u64> {
        self.atoms().find_map(|a| {
            let pos = a.find(MANGLE_PREFIX)?;
            let digits: String = a[pos + MANGLE_PREFIX.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            digits.parse().ok()
        })
    }

    /// The `code/` record path holding this name's definition (code.md §1).
    pub fn code_file(&self) -> String {
        qualifier_to_code_path(self.qualifier())
    }
}

/// `__torch__.pkgx.mods` → `code/__torch__/pkgx/mods.py`.
pub fn qualifier_to_code_path(qualifier: &str) -> String {
    format!("code/{}.py", qualifier.replace('.', "/"))
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for QualifiedName {
    fn from(s: &str) -> Self {
        QualifiedName(s.to_string())
    }
}

/// A TorchScript type annotation, e.g. `Dict[str, List[Tensor]]` or a qualified class name.
/// Printing gives back PyTorch's normalized spelling (`, ` between arguments).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TypeExpr {
    /// A bare name: `Tensor`, `int`, `NoneType`, `__torch__.M`, ...
    Name(String),
    /// A generic application: `List[int]`, `Optional[T]`, `Tuple[A, B]`, `Final[int]`.
    Generic(String, Vec<TypeExpr>),
    /// `Tuple[()]`: the empty tuple type.
    EmptyTuple,
}

/// A type annotation [`TypeExpr::parse`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid type {text:?} at column {column}: {message}")]
pub struct TypeParseError {
    /// The whole annotation text.
    pub text: String,
    /// Byte offset into `text` where parsing stopped.
    pub column: usize,
    /// What was expected there.
    pub message: &'static str,
}

/// The unqualified type names TorchScript's type parser knows (PyTorch's base Python
/// types table: `c10::DefaultTypeFactory::basePythonTypes`). Each was loaded by
/// PyTorch 2.15 as `Optional[NAME]`; names outside it (`Scalar`, `ScalarType`, `Layout`,
/// `Storage`, `dict`, ...) fail with "Unknown type name".
pub const BASE_TYPE_NAMES: &[&str] = &[
    "Tensor",
    "LongTensor",
    "DoubleTensor",
    "FloatTensor",
    "IntTensor",
    "ShortTensor",
    "HalfTensor",
    "CharTensor",
    "ByteTensor",
    "BoolTensor",
    "int",
    "float",
    "bool",
    "complex",
    "str",
    "Device",
    "Generator",
    "Stream",
    "number",
    "None",
    "NoneType",
    "Any",
    "Capsule",
    "list",
    "tuple",
];

/// Generic heads (`List[int]`); a bare head is left for the parser to judge.
pub const GENERIC_TYPE_NAMES: &[&str] = &[
    "List", "Dict", "Tuple", "Optional", "Union", "Future", "RRef", "Await", "Final",
];

/// Deepest type nesting accepted; keeps recursive printing and matching bounded.
pub const MAX_TYPE_DEPTH: usize = 64;

impl TypeExpr {
    /// The bare name `s`.
    pub fn name(s: &str) -> Self {
        TypeExpr::Name(s.to_string())
    }

    /// `List[elem]`.
    pub fn list(elem: TypeExpr) -> Self {
        TypeExpr::Generic("List".into(), vec![elem])
    }

    /// `Dict[k, v]`.
    pub fn dict(k: TypeExpr, v: TypeExpr) -> Self {
        TypeExpr::Generic("Dict".into(), vec![k, v])
    }

    /// Parses an annotation as the `code/` files and type tags spell it
    /// (`Dict[str, List[int]]`, `Tuple[()]`), at most [`MAX_TYPE_DEPTH`] deep.
    pub fn parse(text: &str) -> Result<Self, TypeParseError> {
        // A bare name (most annotations: `Tensor`, `int`, `__torch__.M`) is itself: the
        // same result as the parser's, without it.
        let name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.';
        if !text.is_empty() && text.bytes().all(name_byte) {
            return Ok(TypeExpr::Name(text.to_string()));
        }
        let mut p = TypeParser {
            text,
            pos: 0,
            depth: 0,
        };
        let t = p.parse_type()?;
        p.skip_ws();
        if p.pos != text.len() {
            return Err(p.error("unexpected text after type"));
        }
        Ok(t)
    }

    /// The head name: `List` for `List[int]`, the name itself for a bare name.
    pub fn head(&self) -> &str {
        match self {
            TypeExpr::Name(n) | TypeExpr::Generic(n, _) => n,
            TypeExpr::EmptyTuple => "Tuple",
        }
    }

    /// The type arguments (`[int]` for `List[int]`); empty for a bare name.
    pub fn args(&self) -> &[TypeExpr] {
        match self {
            TypeExpr::Generic(_, a) => a,
            _ => &[],
        }
    }

    /// Strips `Optional[...]` and `Final[...]` wrappers.
    pub fn unwrap_optional(&self) -> &TypeExpr {
        match self {
            TypeExpr::Generic(n, a) if (n == "Optional" || n == "Final") && a.len() == 1 => {
                a[0].unwrap_optional()
            }
            t => t,
        }
    }

    /// Qualified class-like names mentioned anywhere in this type (`__torch__.*`).
    /// Unqualified leaf names PyTorch's type parser does not know ([`BASE_TYPE_NAMES`];
    /// generic heads are left to the parser): `Nowhere` in `Optional[Nowhere]`.
    pub fn unknown_base_names<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            TypeExpr::Name(n)
                if !n.contains('.')
                    && !BASE_TYPE_NAMES.contains(&n.as_str())
                    && !GENERIC_TYPE_NAMES.contains(&n.as_str()) =>
            {
                out.push(n)
            }
            TypeExpr::Generic(_, a) => a.iter().for_each(|t| t.unknown_base_names(out)),
            _ => {}
        }
    }

    /// Whether `Optional[None]` or `Optional[NoneType]` appears anywhere in this type:
    /// PyTorch's type parser fails an internal assert on it (an optional of nothing).
    pub fn has_optional_of_none(&self) -> bool {
        match self {
            TypeExpr::Generic(n, a) => {
                (n == "Optional"
                    && matches!(a.as_slice(), [TypeExpr::Name(x)] if x == "None" || x == "NoneType"))
                    || a.iter().any(TypeExpr::has_optional_of_none)
            }
            _ => false,
        }
    }

    /// Appends the qualified names (those with a dot, `__torch__.M`) mentioned anywhere in
    /// this type, in text order.
    pub fn named_types(&self, out: &mut Vec<QualifiedName>) {
        match self {
            TypeExpr::Name(n) if n.contains('.') => out.push(QualifiedName::new(n.clone())),
            TypeExpr::Generic(_, a) => a.iter().for_each(|t| t.named_types(out)),
            _ => {}
        }
    }
}

impl fmt::Display for TypeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeExpr::Name(n) => f.write_str(n),
            TypeExpr::EmptyTuple => f.write_str("Tuple[()]"),
            TypeExpr::Generic(n, args) => {
                write!(f, "{n}[")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str("]")
            }
        }
    }
}

struct TypeParser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl TypeParser<'_> {
    fn error(&self, message: &'static str) -> TypeParseError {
        TypeParseError {
            text: self.text.to_string(),
            column: self.pos,
            message,
        }
    }

    fn skip_ws(&mut self) {
        while self.text[self.pos..].starts_with(' ') {
            self.pos += 1;
        }
    }

    fn parse_type(&mut self) -> Result<TypeExpr, TypeParseError> {
        self.depth += 1;
        if self.depth > MAX_TYPE_DEPTH {
            return Err(self.error("type nested too deeply"));
        }
        self.skip_ws();
        let rest = &self.text[self.pos..];
        if rest.starts_with("()") {
            self.pos += 2;
            self.depth -= 1;
            return Ok(TypeExpr::EmptyTuple);
        }
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        if len == 0 {
            return Err(self.error("expected a type name"));
        }
        let name = rest[..len].to_string();
        self.pos += len;
        self.skip_ws();
        let t = if self.text[self.pos..].starts_with('[') {
            self.pos += 1;
            let mut args = Vec::new();
            loop {
                args.push(self.parse_type()?);
                self.skip_ws();
                let rest = &self.text[self.pos..];
                if rest.starts_with(',') {
                    self.pos += 1;
                } else if rest.starts_with(']') {
                    self.pos += 1;
                    break;
                } else {
                    return Err(self.error("expected ',' or ']'"));
                }
            }
            if name == "Tuple" && args == [TypeExpr::EmptyTuple] {
                TypeExpr::EmptyTuple
            } else {
                TypeExpr::Generic(name, args)
            }
        } else {
            TypeExpr::Name(name)
        };
        self.depth -= 1;
        Ok(t)
    }
}

/// A parameter of a method or function signature.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The parameter name.
    pub name: String,
    /// `None` only for the unannotated `self` of interface methods.
    pub ty: Option<TypeExpr>,
    /// The default value's literal text, as printed (`None`, `2`, `"x"`).
    pub default: Option<String>,
}

/// A method or function signature: `def f(self, x: int = 2) -> Tensor`.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    /// The parameters in order, `self` included.
    pub params: Vec<Param>,
    /// The return annotation (after `->`), if written.
    pub returns: Option<TypeExpr>,
}

impl Signature {
    /// Named types of the parameters, then of the return type.
    pub fn named_types(&self, out: &mut Vec<QualifiedName>) {
        for t in self
            .params
            .iter()
            .filter_map(|p| p.ty.as_ref())
            .chain(&self.returns)
        {
            t.named_types(out);
        }
    }
}

/// A method of a class, or a free function: signature plus the body kept as text.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodDef {
    /// The method's name (unqualified).
    pub name: String,
    /// Parameters and return type.
    pub signature: Signature,
    /// The body lines exactly as in the file, with their indentation and `\n` endings.
    pub body: String,
}

/// Whether a class is an `nn.Module` or a plain TorchScript class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassKind {
    /// `class X(Module):` — an `nn.Module` compiled to TorchScript.
    Module,
    /// `class X:` — a TorchScript class (`@torch.jit.script class`).
    Class,
}

/// One attribute slot of a class, in slot order (which is the pickled order).
#[derive(Clone, Debug, PartialEq)]
pub struct AttributeDecl {
    /// The attribute name.
    pub name: String,
    /// The declared type (the class body's `name : TYPE`).
    pub ty: TypeExpr,
}

/// A `NAME : Final[TYPE] = LITERAL` constant; the literal is kept as text.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstantDecl {
    /// The constant's name.
    pub name: String,
    /// The declared type (`Final[...]`).
    pub ty: TypeExpr,
    /// The value's literal text, as printed (`3`, `"x"`, `(1, 2)`).
    pub literal: String,
}

/// A class declared in `code/`: a module or a TorchScript class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassDef {
    /// The qualified name (`__torch__.M`).
    pub name: QualifiedName,
    /// Module or plain class (`class X(Module):` or `class X:`).
    pub kind: ClassKind,
    /// `__parameters__` (modules only).
    pub parameters: Vec<String>,
    /// `__buffers__` (modules only).
    pub buffers: Vec<String>,
    /// `__forward_pre_hooks__`: names of the methods run before `forward`; `None` when the
    /// class does not list them.
    pub forward_pre_hooks: Option<Vec<String>>,
    /// `__forward_hooks__`: names of the methods run after `forward`; `None` when the class
    /// does not list them.
    pub forward_hooks: Option<Vec<String>>,
    /// The attribute slots, in slot (pickled) order.
    pub attributes: Vec<AttributeDecl>,
    /// The `Final` constants, in text order.
    pub constants: Vec<ConstantDecl>,
    /// The methods, in text order.
    pub methods: Vec<MethodDef>,
}

impl ClassDef {
    /// An empty class (no attributes, constants or methods).
    pub fn new(name: QualifiedName, kind: ClassKind) -> Self {
        ClassDef {
            name,
            kind,
            parameters: Vec::new(),
            buffers: Vec::new(),
            forward_pre_hooks: None,
            forward_hooks: None,
            attributes: Vec::new(),
            constants: Vec::new(),
            methods: Vec::new(),
        }
    }

    /// The attribute slot called `name`, if declared.
    pub fn attribute(&self, name: &str) -> Option<&AttributeDecl> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The attribute `name`, expected in slot `slot`: objects hold their attributes in
    /// declaration order, so this is O(1) for what PyTorch writes (a module with 5,000
    /// buffers would otherwise cost 12.5 M name comparisons per pass).
    pub fn attribute_in_slot(&self, slot: usize, name: &str) -> Option<&AttributeDecl> {
        match self.attributes.get(slot) {
            Some(a) if a.name == name => Some(a),
            _ => self.attribute(name),
        }
    }

    /// The method called `name`, if defined.
    pub fn method(&self, name: &str) -> Option<&MethodDef> {
        self.methods.iter().find(|m| m.name == name)
    }

    /// Whether `data.pkl` holds this class's state in `__getstate__` form.
    pub fn has_setstate(&self) -> bool {
        self.method("__getstate__").is_some() && self.method("__setstate__").is_some()
    }
}

/// An interface (`class X(Interface):` or `class X(ModuleInterface):`): method signatures
/// without bodies.
#[derive(Clone, Debug, PartialEq)]
pub struct InterfaceDef {
    /// The qualified name.
    pub name: QualifiedName,
    /// `ModuleInterface` (true) or `Interface` (false).
    pub is_module_interface: bool,
    /// Method names and signatures, in text order.
    pub methods: Vec<(String, Signature)>,
}

/// A NamedTuple class (`class X(NamedTuple):`).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTupleDef {
    /// The qualified name.
    pub name: QualifiedName,
    /// Field names and types, in declaration order.
    pub fields: Vec<(String, TypeExpr)>,
}

/// A TorchScript enum (`class X(Enum):`).
#[derive(Clone, Debug, PartialEq)]
pub struct EnumDef {
    /// The qualified name.
    pub name: QualifiedName,
    /// Member name and value literal text (`"a"`, `1`, `2.5`).
    pub members: Vec<(String, String)>,
}

/// A free function (a `def` at the top level of a `code/` file).
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionDef {
    /// The qualified name: the file's qualifier plus the function name.
    pub name: QualifiedName,
    /// The signature and body.
    pub def: MethodDef,
}

/// Anything with a qualified name that `code/` can declare.
#[derive(Clone, Debug, PartialEq)]
pub enum Definition {
    /// A module or TorchScript class.
    Class(ClassDef),
    /// An interface or module interface.
    Interface(InterfaceDef),
    /// A NamedTuple class.
    NamedTuple(NamedTupleDef),
    /// An enum class.
    Enum(EnumDef),
    /// A free function.
    Function(FunctionDef),
}

impl Definition {
    /// The qualified name declared.
    pub fn name(&self) -> &QualifiedName {
        match self {
            Definition::Class(c) => &c.name,
            Definition::Interface(i) => &i.name,
            Definition::NamedTuple(n) => &n.name,
            Definition::Enum(e) => &e.name,
            Definition::Function(f) => &f.name,
        }
    }

    /// Named types the declaration mentions, in text order: attribute and constant types,
    /// then each method's (or the function's) parameter and return types.
    pub fn type_references(&self) -> Vec<QualifiedName> {
        let mut out = self.field_types();
        for m in self.methods() {
            m.signature.named_types(&mut out);
        }
        if let Definition::Interface(i) = self {
            i.methods.iter().for_each(|(_, s)| s.named_types(&mut out));
        }
        out
    }

    /// Every type annotation of the declaration: attribute, constant and NamedTuple field
    /// types, then method (or interface method, or function) parameter and return types.
    pub fn declared_types(&self) -> impl Iterator<Item = &TypeExpr> {
        let fields: Vec<&TypeExpr> = match self {
            Definition::Class(c) => c
                .attributes
                .iter()
                .map(|a| &a.ty)
                .chain(c.constants.iter().map(|k| &k.ty))
                .collect(),
            Definition::NamedTuple(n) => n.fields.iter().map(|(_, t)| t).collect(),
            _ => Vec::new(),
        };
        let mut signatures: Vec<&Signature> =
            self.methods().into_iter().map(|m| &m.signature).collect();
        if let Definition::Interface(i) = self {
            signatures.extend(i.methods.iter().map(|(_, s)| s));
        }
        fields
            .into_iter()
            .chain(signatures.into_iter().flat_map(|s| {
                s.params
                    .iter()
                    .filter_map(|p| p.ty.as_ref())
                    .chain(&s.returns)
            }))
    }

    /// Named types of attributes, constants and NamedTuple fields, in text order.
    pub fn field_types(&self) -> Vec<QualifiedName> {
        let mut out = Vec::new();
        match self {
            Definition::Class(c) => {
                c.attributes.iter().for_each(|a| a.ty.named_types(&mut out));
                c.constants.iter().for_each(|k| k.ty.named_types(&mut out));
            }
            Definition::NamedTuple(n) => n.fields.iter().for_each(|(_, t)| t.named_types(&mut out)),
            _ => {}
        }
        out
    }

    /// The methods (or the function) with their bodies, in text order.
    pub fn methods(&self) -> Vec<&MethodDef> {
        match self {
            Definition::Class(c) => c.methods.iter().collect(),
            Definition::Function(f) => vec![&f.def],
            _ => Vec::new(),
        }
    }

    /// What kind of definition this is (`module`, `class`, `interface`, `namedtuple`,
    /// `enum`, `function`), for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Definition::Class(c) if c.kind == ClassKind::Module => "module",
            Definition::Class(_) => "class",
            Definition::Interface(_) => "interface",
            Definition::NamedTuple(_) => "namedtuple",
            Definition::Enum(_) => "enum",
            Definition::Function(_) => "function",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_expressions_round_trip() {
        for s in [
            "Tensor",
            "Dict[str, List[Tensor]]",
            "Optional[__torch__.pkgx.mods.Point]",
            "Tuple[()]",
            "Tuple[int, Tuple[()], float]",
            "Final[Tuple[int, int]]",
        ] {
            assert_eq!(TypeExpr::parse(s).unwrap().to_string(), s);
        }
        assert!(TypeExpr::parse("List[int").is_err());
        assert!(TypeExpr::parse("List[int]]").is_err());
        let deep = "List[".repeat(100) + "int" + &"]".repeat(100);
        assert!(TypeExpr::parse(&deep).is_err());
    }

    #[test]
    fn qualified_name_parts() {
        let q = QualifiedName::from("__torch__.torch.nn.modules.linear.___torch_mangle_3.Linear");
        assert_eq!(q.name(), "Linear");
        assert_eq!(
            q.qualifier(),
            "__torch__.torch.nn.modules.linear.___torch_mangle_3"
        );
        assert_eq!(q.mangle_number(), Some(3));
        assert_eq!(
            q.code_file(),
            "code/__torch__/torch/nn/modules/linear/___torch_mangle_3.py"
        );
    }
}

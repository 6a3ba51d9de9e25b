//! `forward` bodies of generated modules: a small expression language over float32
//! tensors, generated from [`arbitrary::Unstructured`], with three back ends:
//!
//! * [`forward_source`] / [`function_source`]: TorchScript text as PyTorch prints it in
//!   `code/` (what `torch.jit.load` compiles);
//! * [`forward_bytecode`]: mobile bytecode for the root's `forward`, every child call and
//!   free-function call inlined (what the lite interpreter runs);
//! * [`evaluate`]: a Rust evaluator that predicts `forward`'s output.
//!
//! Every generated class has one method `forward(self, x: Tensor) -> Tensor` mapping a
//! float32 `[B, F]` tensor to `[B, F]` (one `F` for the whole tree). `self` offers float32
//! `[F]` attributes (added with broadcasting), `[F, F]` attributes (linear weights) and
//! child modules (whose `forward` the body calls). Free functions
//! `def helper_k(x: Tensor) -> Tensor` are defined once per unit; a function's body uses
//! only `x` and earlier functions.
//!
//! Shapes: a body's result has the shape of `x` (every operation keeps the shape of its
//! "batched" operand; an `[F]` attribute only ever meets it through broadcasting `add`),
//! so a body given `[B, F]` returns `[B, F]`, and given `[F]` returns `[F]`.
//!
//! Not generated (yet): interface calls and NamedTuples. `torch.jit.load` would compile
//! them from source, but the bytecode back end would need INTERFACE_CALL (methods of
//! non-root classes, which the flatbuffer does not carry here) or NAMED_TUPLE_CONSTRUCT
//! with a type annotation, neither of which is checked against the lite interpreter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arbitrary::Unstructured;

use ptconform_core::code::format_float;
use ptconform_core::model::bytecode::{
    Arg, BytecodeFunction, FunctionSchema, Instruction, OpCode, Operator,
};
use ptconform_core::model::{Definition, IValue, Object, QualifiedName, ScalarType, Tensor};

/// Upper bound on `max_nodes` (keeps the recursion of every back end shallow).
pub const MAX_NODES: usize = 256;

/// Nesting limit of [`evaluate`] and [`forward_bytecode`] (expression depth plus inlined
/// calls); deeper inputs are reported as errors instead of overflowing the stack.
pub const MAX_DEPTH: usize = 1024;

/// Limit on the instructions of one inlined bytecode function.
pub const MAX_INSTRUCTIONS: usize = 1 << 20;

/// A scalar constant (`torch.mul(a, 2)` or `torch.mul(a, 0.25)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    Int(i64),
    Float(f64),
}

impl Scalar {
    fn as_f32(self) -> f32 {
        match self {
            Scalar::Int(i) => i as f32,
            Scalar::Float(f) => f as f32,
        }
    }

    fn source(self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => format_float(f),
        }
    }

    fn ivalue(self) -> IValue {
        match self {
            Scalar::Int(i) => IValue::Int(i),
            Scalar::Float(f) => IValue::Double(f),
        }
    }
}

/// Elementwise unary operators (`torch.relu(a)`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Relu,
    Tanh,
    Sigmoid,
    Neg,
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 4] = [UnaryOp::Relu, UnaryOp::Tanh, UnaryOp::Sigmoid, UnaryOp::Neg];

    /// The name after `torch.` and `aten::`.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Relu => "relu",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Neg => "neg",
        }
    }

    fn apply(self, v: f32) -> f32 {
        match self {
            // clamp_min(0): NaN stays NaN.
            UnaryOp::Relu => {
                if v < 0.0 {
                    0.0
                } else {
                    v
                }
            }
            UnaryOp::Tanh => v.tanh(),
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            UnaryOp::Neg => -v,
        }
    }
}

/// A tensor expression of a `forward` (or free function) body.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// The argument `x`.
    Input,
    /// `self.NAME`, a float32 tensor attribute (`[F]` in generated bodies).
    Attr(String),
    /// `torch.add(a, b)`, or `torch.add(a, b, alpha=k)` (broadcasting).
    Add {
        a: Box<Expr>,
        b: Box<Expr>,
        alpha: Option<i64>,
    },
    /// `torch.mul(a, c)` with an int or float constant.
    Mul(Box<Expr>, Scalar),
    /// `torch.relu(a)`, `torch.tanh(a)`, ...
    Unary(UnaryOp, Box<Expr>),
    /// `torch.linear(a, self.weight)` or `torch.linear(a, self.weight, self.bias)`
    /// (weight `[F, F]`, bias `[F]`).
    Linear {
        input: Box<Expr>,
        weight: String,
        bias: Option<String>,
    },
    /// `self.CHILD.forward(arg)`: the module object in attribute `child`.
    Child { child: String, arg: Box<Expr> },
    /// `__torch__.helper_k(arg)`: a free function of the unit.
    Call {
        function: QualifiedName,
        arg: Box<Expr>,
    },
    /// `(e0, e1, ...)[index]`: TUPLE_CONSTRUCT then TUPLE_INDEX.
    TupleIndex { items: Vec<Expr>, index: usize },
    /// `t0, t1, ..., = (e0, e1, ...)` and then `t{index}`: TUPLE_CONSTRUCT then
    /// `prim::TupleUnpack`.
    TupleUnpack { items: Vec<Expr>, index: usize },
}

impl Expr {
    /// Names of the kinds [`Expr::count_kinds`] reports (variants, plus the kinds of
    /// constants: `mul:int`, `mul:float`, `add:alpha`, and each unary op `unary:NAME`,
    /// `linear:bias`, `linear:no-bias`).
    pub const KINDS: &'static [&'static str] = &[
        "input",
        "attr",
        "add",
        "add:alpha",
        "mul:int",
        "mul:float",
        "unary:relu",
        "unary:tanh",
        "unary:sigmoid",
        "unary:neg",
        "linear:bias",
        "linear:no-bias",
        "child",
        "call",
        "tuple-index",
        "tuple-unpack",
    ];

    /// Adds one count per node to `counts`, by kind (see [`Expr::KINDS`]).
    pub fn count_kinds(&self, counts: &mut BTreeMap<&'static str, usize>) {
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            let kind = match e {
                Expr::Input => "input",
                Expr::Attr(_) => "attr",
                Expr::Add { a, b, alpha } => {
                    stack.push(a);
                    stack.push(b);
                    if alpha.is_some() { "add:alpha" } else { "add" }
                }
                Expr::Mul(a, c) => {
                    stack.push(a);
                    match c {
                        Scalar::Int(_) => "mul:int",
                        Scalar::Float(_) => "mul:float",
                    }
                }
                Expr::Unary(op, a) => {
                    stack.push(a);
                    match op {
                        UnaryOp::Relu => "unary:relu",
                        UnaryOp::Tanh => "unary:tanh",
                        UnaryOp::Sigmoid => "unary:sigmoid",
                        UnaryOp::Neg => "unary:neg",
                    }
                }
                Expr::Linear { input, bias, .. } => {
                    stack.push(input);
                    if bias.is_some() {
                        "linear:bias"
                    } else {
                        "linear:no-bias"
                    }
                }
                Expr::Child { arg, .. } => {
                    stack.push(arg);
                    "child"
                }
                Expr::Call { arg, .. } => {
                    stack.push(arg);
                    "call"
                }
                Expr::TupleIndex { items, .. } => {
                    stack.extend(items);
                    "tuple-index"
                }
                Expr::TupleUnpack { items, .. } => {
                    stack.extend(items);
                    "tuple-unpack"
                }
            };
            *counts.entry(kind).or_default() += 1;
        }
    }
}

/// A free TorchScript function `def NAME(x: Tensor) -> Tensor` of the unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    /// Qualified (`__torch__.helper_0`).
    pub name: QualifiedName,
    pub body: Expr,
}

/// The methods of one generated unit: free functions and the `forward` body of each
/// module class, keyed by the class's qualified name as it appears in `Object.class`
/// (after any renaming when modules were combined).
#[derive(Clone, Debug, Default)]
pub struct Unit {
    pub functions: Vec<Function>,
    pub bodies: HashMap<QualifiedName, Expr>,
}

impl Unit {
    pub fn function(&self, name: &QualifiedName) -> Option<&Function> {
        self.functions.iter().find(|f| &f.name == name)
    }
}

/// What `self` offers a body: names of float32 `[F]` attributes, of float32 `[F, F]`
/// attributes, of child-module attributes (each with a `forward`), and the free functions
/// the body may call.
#[derive(Clone, Debug, Default)]
pub struct Usable<'a> {
    pub vectors: Vec<&'a str>,
    pub matrices: Vec<&'a str>,
    pub children: Vec<&'a str>,
    pub functions: Vec<&'a QualifiedName>,
}

impl<'a> Usable<'a> {
    /// What `obj` offers with `features` = F: its float32 `[F]` and `[F, F]` tensor
    /// attributes (any strides) and its object attributes that have a body in `bodies`;
    /// plus `functions`.
    pub fn of_object(
        obj: &'a Object,
        features: i64,
        bodies: &HashMap<QualifiedName, Expr>,
        functions: &'a [Function],
    ) -> Self {
        let mut u = Usable {
            functions: functions.iter().map(|f| &f.name).collect(),
            ..Default::default()
        };
        for (name, v) in obj.attributes() {
            let Some(name) = name.as_str() else { continue };
            match v {
                IValue::Tensor(t) if usable_float(t) => {
                    if t.sizes[..] == [features] {
                        u.vectors.push(name);
                    } else if t.sizes[..] == [features, features] {
                        u.matrices.push(name);
                    }
                }
                IValue::Object(o) if bodies.contains_key(&o.class) => u.children.push(name),
                _ => {}
            }
        }
        u
    }
}

fn usable_float(t: &Tensor) -> bool {
    t.dtype() == ScalarType::Float32
        && t.device().is_cpu()
        && t.quantization.is_none()
        && !t.conj
        && read_tensor(t).is_ok()
}

/// What an expression must produce: the shape of `x`, or either shape.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    LikeInput,
    Any,
}

struct Gen<'u, 'd, 'a> {
    u: &'u mut Unstructured<'d>,
    usable: &'a Usable<'a>,
    budget: usize,
}

impl Gen<'_, '_, '_> {
    fn leaf(&mut self, need: Need) -> arbitrary::Result<Expr> {
        if need == Need::Any
            && !self.usable.vectors.is_empty()
            && self.u.int_in_range(0..=1u8)? == 1
        {
            return Ok(Expr::Attr(self.pick(&self.usable.vectors)?.to_string()));
        }
        Ok(Expr::Input)
    }

    fn pick<'s>(&mut self, names: &[&'s str]) -> arbitrary::Result<&'s str> {
        Ok(names[self.u.int_in_range(0..=names.len() - 1)?])
    }

    fn sub(&mut self, need: Need) -> arbitrary::Result<Box<Expr>> {
        Ok(Box::new(self.expr(need)?))
    }

    fn items(&mut self, need: Need) -> arbitrary::Result<(Vec<Expr>, usize)> {
        let n = self.u.int_in_range(2..=3usize)?;
        let index = self.u.int_in_range(0..=n - 1)?;
        let mut items = Vec::with_capacity(n);
        for i in 0..n {
            items.push(self.expr(if i == index { need } else { Need::Any })?);
        }
        Ok((items, index))
    }

    fn expr(&mut self, need: Need) -> arbitrary::Result<Expr> {
        if self.budget == 0 {
            return self.leaf(need);
        }
        let choice = self.u.int_in_range(0..=10u8)?;
        if choice == 0 {
            return self.leaf(need);
        }
        self.budget -= 1;
        let usable = self.usable;
        // Choices whose ingredient is missing fall back to an always-possible one.
        let choice = match choice {
            5 if usable.matrices.is_empty() => 3,
            6 if usable.children.is_empty() => 1,
            7 if usable.functions.is_empty() => 2,
            c => c,
        };
        Ok(match choice {
            1 | 10 => {
                // One operand has x's shape, the other may be an [F] attribute.
                let first_like_input = self.u.int_in_range(0..=1u8)? == 0;
                let (na, nb) = if need == Need::Any {
                    (Need::Any, Need::Any)
                } else if first_like_input {
                    (Need::LikeInput, Need::Any)
                } else {
                    (Need::Any, Need::LikeInput)
                };
                let a = self.sub(na)?;
                let b = self.sub(nb)?;
                let alpha = if self.u.int_in_range(0..=2u8)? == 2 {
                    Some(nonzero(self.u.int_in_range(-2..=2i64)?))
                } else {
                    None
                };
                Expr::Add { a, b, alpha }
            }
            2 => {
                let a = self.sub(need)?;
                let c = if self.u.int_in_range(0..=1u8)? == 0 {
                    Scalar::Int(nonzero(self.u.int_in_range(-3..=2i64)?))
                } else {
                    Scalar::Float(nonzero(self.u.int_in_range(-8..=7i64)?) as f64 / 4.0)
                };
                Expr::Mul(a, c)
            }
            3 | 4 => {
                let op = UnaryOp::ALL[self.u.int_in_range(0..=UnaryOp::ALL.len() - 1)?];
                Expr::Unary(op, self.sub(need)?)
            }
            5 => {
                let input = self.sub(need)?;
                let weight = self.pick(&usable.matrices)?.to_string();
                let bias = if !usable.vectors.is_empty() && self.u.int_in_range(0..=2u8)? > 0 {
                    Some(self.pick(&usable.vectors)?.to_string())
                } else {
                    None
                };
                Expr::Linear {
                    input,
                    weight,
                    bias,
                }
            }
            6 => {
                let child = self.pick(&usable.children)?.to_string();
                Expr::Child {
                    child,
                    arg: self.sub(need)?,
                }
            }
            7 => {
                let function =
                    usable.functions[self.u.int_in_range(0..=usable.functions.len() - 1)?].clone();
                Expr::Call {
                    function,
                    arg: self.sub(need)?,
                }
            }
            8 => {
                let (items, index) = self.items(need)?;
                Expr::TupleIndex { items, index }
            }
            _ => {
                let (items, index) = self.items(need)?;
                Expr::TupleUnpack { items, index }
            }
        })
    }
}

/// Maps `k` in `lo..=hi` onto `lo..=hi+1` without 0 (multiplying by zero would make the
/// rest of an expression unobservable).
fn nonzero(k: i64) -> i64 {
    if k >= 0 { k + 1 } else { k }
}

/// A random `forward` body over what `usable` offers, with at most `max_nodes` (capped at
/// [`MAX_NODES`]) operation nodes. Total: any input gives a body; an exhausted `u` gives
/// `return x`. The result has the shape of `x`.
pub fn gen_forward(
    u: &mut Unstructured,
    usable: &Usable,
    max_nodes: usize,
) -> arbitrary::Result<Expr> {
    let mut g = Gen {
        u,
        usable,
        budget: max_nodes.min(MAX_NODES),
    };
    g.expr(Need::LikeInput)
}

/// Up to `max_count` free functions `QUALIFIER.helper_k`, each with at most `max_nodes`
/// nodes and calling only earlier ones (so inlining terminates). An exhausted `u` gives
/// none.
pub fn gen_functions(
    u: &mut Unstructured,
    qualifier: &str,
    max_count: usize,
    max_nodes: usize,
) -> arbitrary::Result<Vec<Function>> {
    let count = u.int_in_range(0..=max_count)?;
    let mut out: Vec<Function> = Vec::with_capacity(count);
    for k in 0..count {
        let usable = Usable {
            functions: out.iter().map(|f| &f.name).collect(),
            ..Default::default()
        };
        let body = gen_forward(u, &usable, max_nodes)?;
        out.push(Function {
            name: QualifiedName::join(qualifier, &format!("helper_{k}")),
            body,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// TorchScript source

struct Printer {
    lines: Vec<String>,
    next: usize,
}

impl Printer {
    fn fresh(&mut self) -> String {
        let v = format!("_{}", self.next);
        self.next += 1;
        v
    }

    fn assign(&mut self, rhs: String) -> String {
        let v = self.fresh();
        self.lines.push(format!("{v} = {rhs}"));
        v
    }

    fn tuple(&mut self, items: &[Expr]) -> String {
        let names: Vec<String> = items.iter().map(|e| self.emit(e)).collect();
        self.assign(format!("({})", names.join(", ")))
    }

    /// Emits statements for `e`; returns the name holding its value.
    fn emit(&mut self, e: &Expr) -> String {
        match e {
            Expr::Input => "x".to_string(),
            Expr::Attr(n) => self.assign(format!("self.{n}")),
            Expr::Add { a, b, alpha } => {
                let a = self.emit(a);
                let b = self.emit(b);
                match alpha {
                    Some(k) => self.assign(format!("torch.add({a}, {b}, alpha={k})")),
                    None => self.assign(format!("torch.add({a}, {b})")),
                }
            }
            Expr::Mul(a, c) => {
                let a = self.emit(a);
                self.assign(format!("torch.mul({a}, {})", c.source()))
            }
            Expr::Unary(op, a) => {
                let a = self.emit(a);
                self.assign(format!("torch.{}({a})", op.name()))
            }
            Expr::Linear {
                input,
                weight,
                bias,
            } => {
                let a = self.emit(input);
                let w = self.assign(format!("self.{weight}"));
                match bias {
                    Some(b) => {
                        let b = self.assign(format!("self.{b}"));
                        self.assign(format!("torch.linear({a}, {w}, {b})"))
                    }
                    None => self.assign(format!("torch.linear({a}, {w})")),
                }
            }
            Expr::Child { child, arg } => {
                let a = self.emit(arg);
                let c = self.assign(format!("self.{child}"));
                self.assign(format!("({c}).forward({a}, )"))
            }
            Expr::Call { function, arg } => {
                let a = self.emit(arg);
                self.assign(format!("{}({a}, )", function.as_str()))
            }
            Expr::TupleIndex { items, index } => {
                let t = self.tuple(items);
                self.assign(format!("({t})[{index}]"))
            }
            Expr::TupleUnpack { items, index } => {
                let t = self.tuple(items);
                let names: Vec<String> = items.iter().map(|_| self.fresh()).collect();
                let targets: String = names.iter().map(|n| format!("{n}, ")).collect();
                self.lines.push(format!("{}= {t}", targets));
                names[*index].clone()
            }
        }
    }
}

fn body_source(body: &Expr) -> String {
    let mut p = Printer {
        lines: Vec::new(),
        next: 0,
    };
    let result = p.emit(body);
    let mut out = String::new();
    for l in &p.lines {
        out.push_str("  ");
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&format!("  return {result}\n"));
    out
}

/// `forward` of `class` as PyTorch prints a method in `code/` (def at column 0, body
/// indented 2; [`ptconform_core::model::compose::ModuleBuilder::method_source`] takes it):
/// `def forward(self: CLASS,\n    x: Tensor) -> Tensor:\n  ...\n  return ...\n`.
pub fn forward_source(class: &QualifiedName, body: &Expr) -> String {
    format!(
        "def forward(self: {},\n    x: Tensor) -> Tensor:\n{}",
        class.as_str(),
        body_source(body)
    )
}

/// A free function as PyTorch prints it: `def helper_0(x: Tensor) -> Tensor:\n  ...`.
pub fn function_source(f: &Function) -> String {
    format!(
        "def {}(x: Tensor) -> Tensor:\n{}",
        f.name.name(),
        body_source(&f.body)
    )
}

/// The function as a definition of its unit (for `ModuleBuilder::define`).
pub fn function_definition(f: &Function) -> Result<Definition, ptconform_core::code::CodeError> {
    ptconform_core::code::parse_source(f.name.qualifier(), &function_source(f))?
        .into_iter()
        .next()
        .ok_or(ptconform_core::code::CodeError {
            line: 1,
            message: "no definition".into(),
        })
}

// ---------------------------------------------------------------------------------------
// Errors shared by the bytecode back end and the evaluator

/// Why a body cannot be compiled or evaluated against an object graph.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MethodError(pub String);

fn fail<T>(msg: impl Into<String>) -> Result<T, MethodError> {
    Err(MethodError(msg.into()))
}

fn attr_slot<'o>(obj: &'o Object, name: &str) -> Result<(usize, &'o IValue), MethodError> {
    obj.attributes()
        .iter()
        .enumerate()
        .find(|(_, (n, _))| n.as_bytes() == name.as_bytes())
        .map(|(i, (_, v))| (i, v))
        .ok_or_else(|| MethodError(format!("{} has no attribute {name:?}", obj.class.as_str())))
}

fn tensor_attr<'o>(
    this: Option<&'o Object>,
    name: &str,
) -> Result<(usize, &'o Arc<Tensor>), MethodError> {
    let Some(obj) = this else {
        return fail(format!("self.{name} in a free function"));
    };
    match attr_slot(obj, name)? {
        (i, IValue::Tensor(t)) => Ok((i, t)),
        (_, v) => fail(format!(
            "{}.{name} is a {}, not a Tensor",
            obj.class.as_str(),
            v.kind_name()
        )),
    }
}

fn child_attr<'o, 'u>(
    this: Option<&'o Object>,
    name: &str,
    unit: &'u Unit,
) -> Result<(usize, &'o Arc<Object>, &'u Expr), MethodError> {
    let Some(obj) = this else {
        return fail(format!("self.{name} in a free function"));
    };
    match attr_slot(obj, name)? {
        (i, IValue::Object(o)) => match unit.bodies.get(&o.class) {
            Some(body) => Ok((i, o, body)),
            None => fail(format!("no forward body for class {}", o.class.as_str())),
        },
        (_, v) => fail(format!(
            "{}.{name} is a {}, not a module",
            obj.class.as_str(),
            v.kind_name()
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Mobile bytecode

#[derive(Clone, PartialEq)]
enum ConstKey {
    None,
    Int(i64),
    Float(u64),
}

struct Emitter<'u> {
    unit: &'u Unit,
    instructions: Vec<Instruction>,
    operators: Vec<Operator>,
    constants: Vec<(ConstKey, IValue)>,
    registers: i32,
}

impl Emitter<'_> {
    fn push(&mut self, op: OpCode, n: u16, x: i32) -> Result<(), MethodError> {
        if self.instructions.len() >= MAX_INSTRUCTIONS {
            return fail(format!(
                "more than {MAX_INSTRUCTIONS} instructions after inlining"
            ));
        }
        self.instructions.push(Instruction { op, n, x });
        Ok(())
    }

    fn op(&mut self, name: &str, overload: &str, num_args: i32) -> Result<(), MethodError> {
        let i = match self.operators.iter().position(|o| {
            o.name == name && o.overload_name == overload && o.num_args == Some(num_args)
        }) {
            Some(i) => i,
            None => {
                self.operators.push(Operator {
                    name: name.into(),
                    overload_name: overload.into(),
                    num_args: Some(num_args),
                });
                self.operators.len() - 1
            }
        };
        self.push(OpCode::Op, 0, i as i32)
    }

    fn loadc(&mut self, v: IValue) -> Result<(), MethodError> {
        let key = match &v {
            IValue::Int(i) => ConstKey::Int(*i),
            IValue::Double(f) => ConstKey::Float(f.to_bits()),
            _ => ConstKey::None,
        };
        let i = match self.constants.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.constants.push((key, v));
                self.constants.len() - 1
            }
        };
        self.push(OpCode::LoadC, 0, i as i32)
    }

    fn new_registers(&mut self, n: i32) -> Result<i32, MethodError> {
        let first = self.registers + 1;
        self.registers += n;
        if self.registers > i32::from(u16::MAX) {
            return fail("too many registers");
        }
        Ok(first)
    }

    fn get_attr(&mut self, self_reg: i32, slot: usize) -> Result<(), MethodError> {
        self.push(OpCode::Load, 0, self_reg)?;
        self.push(OpCode::GetAttr, 0, slot as i32)
    }

    /// Pushes `e`'s value; `this` is `self` (object and register) unless in a function.
    fn expr(
        &mut self,
        e: &Expr,
        this: Option<(&Object, i32)>,
        x: i32,
        depth: usize,
    ) -> Result<(), MethodError> {
        if depth > MAX_DEPTH {
            return fail("body nested too deeply");
        }
        let d = depth + 1;
        let obj = this.map(|(o, _)| o);
        let self_reg = this.map_or(0, |(_, r)| r);
        match e {
            Expr::Input => self.push(OpCode::Load, 0, x),
            Expr::Attr(n) => {
                let (slot, _) = tensor_attr(obj, n)?;
                self.get_attr(self_reg, slot)
            }
            Expr::Add { a, b, alpha } => {
                self.expr(a, this, x, d)?;
                self.expr(b, this, x, d)?;
                self.loadc(IValue::Int(alpha.unwrap_or(1)))?;
                self.op("aten::add", "Tensor", 3)
            }
            Expr::Mul(a, c) => {
                self.expr(a, this, x, d)?;
                self.loadc(c.ivalue())?;
                self.op("aten::mul", "Scalar", 2)
            }
            Expr::Unary(op, a) => {
                self.expr(a, this, x, d)?;
                self.op(&format!("aten::{}", op.name()), "", 1)
            }
            Expr::Linear {
                input,
                weight,
                bias,
            } => {
                self.expr(input, this, x, d)?;
                let (slot, _) = tensor_attr(obj, weight)?;
                self.get_attr(self_reg, slot)?;
                match bias {
                    Some(b) => {
                        let (slot, _) = tensor_attr(obj, b)?;
                        self.get_attr(self_reg, slot)?;
                    }
                    None => self.loadc(IValue::None)?,
                }
                self.op("aten::linear", "", 3)
            }
            Expr::Child { child, arg } => {
                let (slot, child_obj, body) = child_attr(obj, child, self.unit)?;
                self.expr(arg, this, x, d)?;
                let arg_reg = self.new_registers(1)?;
                self.push(OpCode::Store, 0, arg_reg)?;
                self.get_attr(self_reg, slot)?;
                let child_reg = self.new_registers(1)?;
                self.push(OpCode::Store, 0, child_reg)?;
                self.expr(body, Some((child_obj, child_reg)), arg_reg, d)
            }
            Expr::Call { function, arg } => {
                let Some(f) = self.unit.function(function) else {
                    return fail(format!("no function {}", function.as_str()));
                };
                self.expr(arg, this, x, d)?;
                let arg_reg = self.new_registers(1)?;
                self.push(OpCode::Store, 0, arg_reg)?;
                self.expr(&f.body, None, arg_reg, d)
            }
            Expr::TupleIndex { items, index } => {
                check_index(items, *index)?;
                for item in items {
                    self.expr(item, this, x, d)?;
                }
                self.push(OpCode::TupleConstruct, 0, items.len() as i32)?;
                self.loadc(IValue::Int(*index as i64))?;
                self.push(OpCode::TupleIndex, 0, 0)
            }
            Expr::TupleUnpack { items, index } => {
                check_index(items, *index)?;
                for item in items {
                    self.expr(item, this, x, d)?;
                }
                self.push(OpCode::TupleConstruct, 0, items.len() as i32)?;
                self.op("prim::TupleUnpack", "", 1)?;
                let first = self.new_registers(items.len() as i32)?;
                self.push(OpCode::StoreN, items.len() as u16, first)?;
                self.push(OpCode::Load, 0, first + *index as i32)
            }
        }
    }
}

fn check_index(items: &[Expr], index: usize) -> Result<(), MethodError> {
    if index >= items.len() || items.len() > usize::from(u16::MAX) {
        return fail(format!("tuple index {index} of {} items", items.len()));
    }
    Ok(())
}

/// Mobile bytecode for `root`'s `forward` (`unit.bodies[root.class]`) with every child
/// call and free-function call inlined, as PyTorch's exporter does (the flatbuffer only
/// stores the root's methods). Registers 1 and 2 hold `self` and `x`; attributes are read
/// with GET_ATTR of their slot in the object; operators: `aten::add.Tensor` (3 args, the
/// alpha always passed), `aten::mul.Scalar` (2), `aten::linear` (3, `None` bias as a
/// constant), `aten::relu`/`tanh`/`sigmoid`/`neg` (1), `prim::TupleUnpack` (1). Schema
/// `(self: CLASS, x: Tensor) -> Tensor`, debug handles `0..n`, class type 0.
pub fn forward_bytecode(root: &Object, unit: &Unit) -> Result<BytecodeFunction, MethodError> {
    let Some(body) = unit.bodies.get(&root.class) else {
        return fail(format!("no forward body for class {}", root.class.as_str()));
    };
    let mut e = Emitter {
        unit,
        instructions: Vec::new(),
        operators: Vec::new(),
        constants: Vec::new(),
        registers: 2,
    };
    e.push(OpCode::StoreN, 2, 1)?;
    e.expr(body, Some((root, 1)), 2, 0)?;
    e.push(OpCode::Ret, 0, 0)?;
    let arg = |name: &str, ty: &str| Arg {
        name: name.into(),
        type_str: ty.into(),
        default_value: None,
    };
    let n = e.instructions.len() as i64;
    Ok(BytecodeFunction {
        qualified_name: QualifiedName::new(format!("{}.forward", root.class.as_str())),
        instructions: e.instructions,
        operators: e.operators,
        constants: e.constants.into_iter().map(|(_, v)| v).collect(),
        type_annotations: Vec::new(),
        register_size: e.registers,
        schema: Some(FunctionSchema {
            arguments: vec![arg("self", root.class.as_str()), arg("x", "Tensor")],
            returns: vec![arg("", "Tensor")],
        }),
        debug_handles: (0..n).collect(),
        class_type: 0,
    })
}

// ---------------------------------------------------------------------------------------
// Evaluator

/// A dense float32 tensor (row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Dense {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Dense, MethodError> {
        if shape.iter().product::<usize>() != data.len() {
            return fail(format!("{} values for shape {shape:?}", data.len()));
        }
        Ok(Dense { shape, data })
    }
}

/// Reads a float32 CPU tensor (any strides and storage offset, negative bit honoured)
/// into a dense one.
pub fn read_tensor(t: &Tensor) -> Result<Dense, MethodError> {
    if t.dtype() != ScalarType::Float32 || !t.device().is_cpu() || t.quantization.is_some() {
        return fail("not a plain float32 CPU tensor");
    }
    if t.sizes.len() != t.strides.len() || t.storage_offset < 0 || t.sizes.iter().any(|&s| s < 0) {
        return fail("bad tensor geometry");
    }
    let shape: Vec<usize> = t.sizes.iter().map(|&s| s as usize).collect();
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &s| a.checked_mul(s))
        .filter(|&n| n <= 1 << 26)
        .ok_or_else(|| MethodError("tensor too large".into()))?;
    let available = t.storage.data.len() / 4;
    let mut data = Vec::with_capacity(numel);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..numel {
        let mut pos = i128::from(t.storage_offset);
        for (i, s) in idx.iter().zip(&t.strides) {
            pos += *i as i128 * i128::from(*s);
        }
        if pos < 0 || pos >= available as i128 {
            return fail("tensor view outside its storage");
        }
        let p = pos as usize * 4;
        let b = &t.storage.data[p..p + 4];
        let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        data.push(if t.neg { -v } else { v });
        for k in (0..idx.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(Dense { shape, data })
}

fn broadcast(a: &Dense, b: &Dense, f: impl Fn(f32, f32) -> f32) -> Result<Dense, MethodError> {
    let rank = a.shape.len().max(b.shape.len());
    let pad = |s: &[usize]| {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (sa, sb) = (pad(&a.shape), pad(&b.shape));
    let mut shape = Vec::with_capacity(rank);
    for (&x, &y) in sa.iter().zip(&sb) {
        shape.push(match (x, y) {
            _ if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return fail(format!(
                    "shapes {:?} and {:?} do not broadcast",
                    a.shape, b.shape
                ));
            }
        });
    }
    let strides = |s: &[usize]| {
        let mut st = vec![0usize; rank];
        let mut acc = 1;
        for k in (0..rank).rev() {
            st[k] = if s[k] == 1 { 0 } else { acc };
            acc *= s[k];
        }
        st
    };
    let (ta, tb) = (strides(&sa), strides(&sb));
    let numel: usize = shape.iter().product();
    let mut data = Vec::with_capacity(numel);
    let mut idx = vec![0usize; rank];
    for _ in 0..numel {
        let ia: usize = idx.iter().zip(&ta).map(|(i, s)| i * s).sum();
        let ib: usize = idx.iter().zip(&tb).map(|(i, s)| i * s).sum();
        data.push(f(a.data[ia], b.data[ib]));
        for k in (0..rank).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(Dense { shape, data })
}

fn map(a: Dense, f: impl Fn(f32) -> f32) -> Dense {
    Dense {
        data: a.data.into_iter().map(f).collect(),
        shape: a.shape,
    }
}

fn linear(x: &Dense, w: &Dense, b: Option<&Dense>) -> Result<Dense, MethodError> {
    let (&inner, batch) = x
        .shape
        .split_last()
        .ok_or_else(|| MethodError("linear of a 0-d tensor".into()))?;
    if w.shape.len() != 2 || w.shape[1] != inner {
        return fail(format!("linear: input {:?}, weight {:?}", x.shape, w.shape));
    }
    let out = w.shape[0];
    if let Some(b) = b
        && b.shape != [out]
    {
        return fail(format!("linear: bias {:?} for {out} outputs", b.shape));
    }
    let rows: usize = batch.iter().product();
    let mut data = Vec::with_capacity(rows * out);
    for r in 0..rows {
        for o in 0..out {
            // f64 accumulation: PyTorch's blocked float sums differ from any fixed order
            // by rounding only; this is the exact sum rounded once.
            let mut acc = 0f64;
            for i in 0..inner {
                acc += f64::from(x.data[r * inner + i]) * f64::from(w.data[o * inner + i]);
            }
            if let Some(b) = b {
                acc += f64::from(b.data[o]);
            }
            data.push(acc as f32);
        }
    }
    let mut shape = batch.to_vec();
    shape.push(out);
    Ok(Dense { shape, data })
}

fn eval(
    e: &Expr,
    this: Option<&Object>,
    x: &Dense,
    unit: &Unit,
    depth: usize,
) -> Result<Dense, MethodError> {
    if depth > MAX_DEPTH {
        return fail("body nested too deeply");
    }
    let d = depth + 1;
    Ok(match e {
        Expr::Input => x.clone(),
        Expr::Attr(n) => read_tensor(tensor_attr(this, n)?.1)?,
        Expr::Add { a, b, alpha } => {
            let a = eval(a, this, x, unit, d)?;
            let b = eval(b, this, x, unit, d)?;
            match alpha {
                None => broadcast(&a, &b, |p, q| p + q)?,
                Some(k) => {
                    let k = *k as f32;
                    broadcast(&a, &b, |p, q| p + k * q)?
                }
            }
        }
        Expr::Mul(a, c) => {
            let c = c.as_f32();
            map(eval(a, this, x, unit, d)?, |v| v * c)
        }
        Expr::Unary(op, a) => map(eval(a, this, x, unit, d)?, |v| op.apply(v)),
        Expr::Linear {
            input,
            weight,
            bias,
        } => {
            let input = eval(input, this, x, unit, d)?;
            let w = read_tensor(tensor_attr(this, weight)?.1)?;
            let b = match bias {
                Some(b) => Some(read_tensor(tensor_attr(this, b)?.1)?),
                None => None,
            };
            linear(&input, &w, b.as_ref())?
        }
        Expr::Child { child, arg } => {
            let (_, obj, body) = child_attr(this, child, unit)?;
            let arg = eval(arg, this, x, unit, d)?;
            eval(body, Some(obj), &arg, unit, d)?
        }
        Expr::Call { function, arg } => {
            let Some(f) = unit.function(function) else {
                return fail(format!("no function {}", function.as_str()));
            };
            let arg = eval(arg, this, x, unit, d)?;
            eval(&f.body, None, &arg, unit, d)?
        }
        Expr::TupleIndex { items, index } | Expr::TupleUnpack { items, index } => {
            check_index(items, *index)?;
            let mut values = Vec::with_capacity(items.len());
            for item in items {
                values.push(eval(item, this, x, unit, d)?);
            }
            values.swap_remove(*index)
        }
    })
}

/// Predicts `root.forward(input)`: evaluates `unit.bodies[root.class]` on float32 data the
/// way PyTorch's CPU kernels do (float32 elementwise arithmetic; linear sums exactly then
/// rounds, so compare with a small tolerance). Attribute tensors are read through their
/// strides and storage offsets.
pub fn evaluate(root: &Object, unit: &Unit, input: &Dense) -> Result<Dense, MethodError> {
    let Some(body) = unit.bodies.get(&root.class) else {
        return fail(format!("no forward body for class {}", root.class.as_str()));
    };
    if input.shape.iter().product::<usize>() != input.data.len() {
        return fail(format!(
            "input: {} values for shape {:?}",
            input.data.len(),
            input.shape
        ));
    }
    eval(body, Some(root), input, unit, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhausted_input_gives_return_x() {
        let names = ["v"];
        let mats = ["w"];
        let q = QualifiedName::new("__torch__.helper_0");
        let usable = Usable {
            vectors: names.to_vec(),
            matrices: mats.to_vec(),
            children: vec!["c"],
            functions: vec![&q],
        };
        let mut u = Unstructured::new(&[]);
        assert_eq!(gen_forward(&mut u, &usable, 10).unwrap(), Expr::Input);
        assert_eq!(
            forward_source(&QualifiedName::new("__torch__.M"), &Expr::Input),
            "def forward(self: __torch__.M,\n    x: Tensor) -> Tensor:\n  return x\n"
        );
        let mut u = Unstructured::new(&[]);
        assert!(gen_functions(&mut u, "__torch__", 3, 5).unwrap().is_empty());
    }

    #[test]
    fn gen_is_total_on_arbitrary_bytes() {
        let usable = Usable {
            vectors: vec!["a", "b"],
            matrices: vec!["w"],
            children: vec![],
            functions: vec![],
        };
        for seed in 0..200u32 {
            let data: Vec<u8> = (0..400u32)
                .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed * 97) >> 13) as u8)
                .collect();
            let mut u = Unstructured::new(&data);
            let e = gen_forward(&mut u, &usable, 1000).unwrap();
            let src = forward_source(&QualifiedName::new("__torch__.M"), &e);
            ptconform_core::code::parse_source("__torch__", &src).unwrap();
        }
    }

    #[test]
    fn deep_hand_built_bodies_are_errors_not_overflows() {
        let mut e = Expr::Input;
        for _ in 0..(MAX_DEPTH + 10) {
            e = Expr::Unary(UnaryOp::Neg, Box::new(e));
        }
        let class = QualifiedName::new("__torch__.M");
        let root = Object {
            class: class.clone(),
            state: ptconform_core::model::ObjectState::Attributes(Vec::new()),
        };
        let mut unit = Unit::default();
        unit.bodies.insert(class, e);
        let input = Dense::new(vec![1, 1], vec![1.0]).unwrap();
        let r = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || {
                (
                    evaluate(&root, &unit, &input).is_err(),
                    forward_bytecode(&root, &unit).is_err(),
                )
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(r, (true, true));
    }
}

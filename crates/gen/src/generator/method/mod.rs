//! `forward` bodies of generated modules: a small expression language over float32
//! tensors (this file: the IR), generated from [`arbitrary::Unstructured`] (`generate.rs`),
//! with three back ends:
//!
//! * [`forward_source`] / [`function_source`] (`source.rs`): TorchScript text as PyTorch
//!   prints it in `code/` (what `torch.jit.load` compiles);
//! * [`forward_bytecode`] (`bytecode.rs`): mobile bytecode for the root's `forward`, every
//!   child call and free-function call inlined (what the lite interpreter runs);
//! * [`evaluate`] (`eval.rs`): a Rust evaluator that predicts `forward`'s output.
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

mod bytecode;
mod eval;
mod generate;
mod source;

pub use bytecode::forward_bytecode;
pub use eval::*;
pub use generate::*;
pub use source::*;

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

pub(super) fn check_index(items: &[Expr], index: usize) -> Result<(), MethodError> {
    if index >= items.len() || items.len() > usize::from(u16::MAX) {
        return fail(format!("tuple index {index} of {} items", items.len()));
    }
    Ok(())
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

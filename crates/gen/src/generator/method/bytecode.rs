//! The mobile bytecode back end: the root's `forward` with every child and free-function
//! call inlined, as the lite interpreter runs it.

use super::*;

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

//! What a scripted `__setstate__` leaves in a module's attributes.
//!
//! A module pickled through `__getstate__` carries only that state; `torch.jit.load`
//! runs the class's TorchScript `__setstate__` on it, and the parameters and buffers
//! PyTorch then reports are the tensors that method assigned. ptconform does not run
//! TorchScript, but evaluates the statements such methods consist of, as PyTorch prints
//! them:
//!
//! * `self.NAME = EXPR` and `NAME = EXPR` (a local), then `return None`;
//! * `EXPR`: the state argument, a local, `(X)[K]` / `X[K]` (tuple item), a literal, or
//!   `torch.add` / `torch.sub` / `torch.mul` / `torch.div` of a float32 or float64
//!   tensor and a number (computed element by element as PyTorch does in that dtype).
//!
//! Anything else (control flow, other calls) is not guessed: evaluation stops with
//! [`Unevaluated`], naming the statement, and `inspect` says so.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::{ClassDef, IValue, ScalarType, Str, Tensor};

/// Why a `__setstate__` body was not evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unevaluated {
    /// The class whose `__setstate__` it is.
    pub class: String,
    /// The first statement ptconform cannot evaluate.
    pub statement: String,
}

impl std::fmt::Display for Unevaluated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.__setstate__ is not evaluated (statement `{}`): the parameters and buffers it assigns are not reported",
            self.class, self.statement
        )
    }
}

/// The attributes `class.__setstate__(state)` assigns, in assignment order (a name
/// assigned twice keeps its last value, at its first position).
pub fn evaluate(class: &ClassDef, state: &IValue) -> Result<Vec<(Str, IValue)>, Unevaluated> {
    let unevaluated = |statement: &str| Unevaluated {
        class: class.name.as_str().to_string(),
        statement: statement.trim().chars().take(120).collect(),
    };
    let Some(method) = class.method("__setstate__") else {
        return Err(unevaluated("<no __setstate__>"));
    };
    let state_name = method
        .signature
        .params
        .get(1)
        .map(|p| p.name.as_str())
        .unwrap_or("state");
    let mut locals: HashMap<String, IValue> = HashMap::new();
    locals.insert(state_name.to_string(), state.clone());
    let mut out: Vec<(Str, IValue)> = Vec::new();
    for line in method.body.lines() {
        let stmt = line.trim();
        if stmt.is_empty() || stmt == "return None" || stmt == "pass" {
            continue;
        }
        let Some((target, expr)) = stmt.split_once(" = ") else {
            return Err(unevaluated(stmt));
        };
        let value = expr_value(expr.trim(), &locals).ok_or_else(|| unevaluated(stmt))?;
        if let Some(attr) = target.strip_prefix("self.") {
            if !is_name(attr) {
                return Err(unevaluated(stmt));
            }
            match out
                .iter_mut()
                .find(|(n, _)| n.as_bytes() == attr.as_bytes())
            {
                Some(slot) => slot.1 = value,
                None => out.push((Str::from(attr), value)),
            }
        } else if is_name(target) {
            locals.insert(target.to_string(), value);
        } else {
            return Err(unevaluated(stmt));
        }
    }
    // The object's slots are the class's attributes, in declaration order.
    let slot = |n: &Str| {
        class
            .attributes
            .iter()
            .position(|a| a.name.as_bytes() == n.as_bytes())
            .unwrap_or(usize::MAX)
    };
    out.sort_by_key(|(n, _)| slot(n));
    Ok(out)
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn expr_value(expr: &str, locals: &HashMap<String, IValue>) -> Option<IValue> {
    if let Some(v) = locals.get(expr) {
        return Some(v.clone());
    }
    // `(X)[K]` or `X[K]`.
    if let Some(body) = expr.strip_suffix(']')
        && let Some(open) = body.rfind('[')
    {
        let base = body[..open].trim();
        let base = base
            .strip_prefix('(')
            .and_then(|b| b.strip_suffix(')'))
            .unwrap_or(base);
        let index: i64 = body[open + 1..].trim().parse().ok()?;
        let IValue::Tuple(t) = expr_value(base, locals)? else {
            return None;
        };
        let len = t.items.len() as i64;
        let k = if index < 0 { index + len } else { index };
        return t.items.get(usize::try_from(k).ok()?).cloned();
    }
    for (op, f) in [
        ("torch.add(", Arith::Add),
        ("torch.sub(", Arith::Sub),
        ("torch.mul(", Arith::Mul),
        ("torch.div(", Arith::Div),
    ] {
        if let Some(args) = expr.strip_prefix(op).and_then(|a| a.strip_suffix(')')) {
            let (a, b) = split_top_comma(args)?;
            let (a, b) = (expr_value(a.trim(), locals)?, expr_value(b.trim(), locals)?);
            return match (a, b) {
                (IValue::Tensor(t), IValue::Int(i)) => arith(&t, f, i as f64),
                (IValue::Tensor(t), IValue::Double(d)) => arith(&t, f, d),
                (a, b) => return number_arith(&a, f, &b),
            }
            .map(|t| IValue::Tensor(Arc::new(t)));
        }
    }
    match crate::code::parse_literal(expr).ok()? {
        crate::code::Literal::None => Some(IValue::None),
        crate::code::Literal::Bool(b) => Some(IValue::Bool(b)),
        crate::code::Literal::Int(i) => Some(IValue::Int(i)),
        crate::code::Literal::Float(f) => Some(IValue::Double(f)),
        crate::code::Literal::Str(s) => Some(IValue::String(Str::from(s))),
        crate::code::Literal::Tuple(_) => None,
    }
}

/// `a, b` split at the one comma outside brackets and strings.
fn split_top_comma(args: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut split = None;
    let mut prev = ' ';
    for (i, c) in args.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q && prev != '\\' => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                if split.is_some() {
                    return None;
                }
                split = Some(i);
            }
            _ => {}
        }
        prev = c;
    }
    let i = split?;
    Some((&args[..i], &args[i + 1..]))
}

/// TorchScript number arithmetic (`aten::add.int`, `aten::mul.float`, ...): int op int
/// is an int (wrapping, as in C++), `div` and anything with a float is a float.
fn number_arith(a: &IValue, op: Arith, b: &IValue) -> Option<IValue> {
    match (a, b, op) {
        (IValue::Int(x), IValue::Int(y), Arith::Add) => Some(IValue::Int(x.wrapping_add(*y))),
        (IValue::Int(x), IValue::Int(y), Arith::Sub) => Some(IValue::Int(x.wrapping_sub(*y))),
        (IValue::Int(x), IValue::Int(y), Arith::Mul) => Some(IValue::Int(x.wrapping_mul(*y))),
        (x, y, op) => {
            let f = |v: &IValue| match v {
                IValue::Int(i) => Some(*i as f64),
                IValue::Double(d) => Some(*d),
                _ => None,
            };
            let (x, y) = (f(x)?, f(y)?);
            Some(IValue::Double(match op {
                Arith::Add => x + y,
                Arith::Sub => x - y,
                Arith::Mul => x * y,
                Arith::Div => x / y,
            }))
        }
    }
}

#[derive(Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

/// `t OP scalar` for a float32 / float64 tensor: a new contiguous tensor of the same
/// shape, dtype and device, computed in that dtype (as PyTorch's CPU kernels do for a
/// Python-number operand).
fn arith(t: &Tensor, op: Arith, scalar: f64) -> Option<Tensor> {
    if t.sparse.is_some() || t.quantization.is_some() || t.device().is_meta() {
        return None;
    }
    let (lo, _) = t.storage_extent().ok()?.unwrap_or((0, 0));
    if lo < 0 {
        return None;
    }
    let es = t.dtype().element_size() as usize;
    let numel = usize::try_from(t.numel()).ok()?;
    // Walk the view in row-major order.
    let mut out = Vec::with_capacity(numel.checked_mul(es)?);
    let mut idx = vec![0i64; t.sizes.len()];
    for _ in 0..numel {
        let off = t.storage_offset + idx.iter().zip(&t.strides).map(|(i, s)| i * s).sum::<i64>();
        let at = usize::try_from(off).ok()?.checked_mul(es)?;
        let bytes = t.storage.data.get(at..at + es)?;
        match t.dtype() {
            ScalarType::Float32 => {
                let x = f32::from_le_bytes(bytes.try_into().ok()?);
                let s = scalar as f32;
                let y = match op {
                    Arith::Add => x + s,
                    Arith::Sub => x - s,
                    Arith::Mul => x * s,
                    Arith::Div => x / s,
                };
                out.extend_from_slice(&y.to_le_bytes());
            }
            ScalarType::Float64 => {
                let x = f64::from_le_bytes(bytes.try_into().ok()?);
                let y = match op {
                    Arith::Add => x + scalar,
                    Arith::Sub => x - scalar,
                    Arith::Mul => x * scalar,
                    Arith::Div => x / scalar,
                };
                out.extend_from_slice(&y.to_le_bytes());
            }
            _ => return None,
        }
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.sizes[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Some(Tensor::contiguous(
        t.dtype(),
        *t.device(),
        t.sizes.clone(),
        Bytes::from(out),
        false,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClassKind, Device, MethodDef, Param, QualifiedName, Signature, Tuple};

    fn class(body: &str) -> ClassDef {
        let mut c = ClassDef::new(QualifiedName::new("__torch__.W"), ClassKind::Module);
        c.methods.push(MethodDef {
            name: "__setstate__".into(),
            signature: Signature {
                params: vec![
                    Param {
                        name: "self".into(),
                        ty: None,
                        default: None,
                    },
                    Param {
                        name: "state".into(),
                        ty: None,
                        default: None,
                    },
                ],
                returns: None,
            },
            body: body.into(),
        });
        c
    }

    fn floats(v: &[f32]) -> Arc<Tensor> {
        let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Arc::new(Tensor::contiguous(
            ScalarType::Float32,
            Device::cpu(),
            vec![v.len() as i64],
            Bytes::from(data),
            false,
        ))
    }

    #[test]
    fn assignments_items_and_arithmetic() {
        let state = IValue::Tuple(Arc::new(Tuple {
            items: vec![IValue::Tensor(floats(&[1.0, 2.5])), IValue::Int(3)],
            named: None,
        }));
        let c = class(
            "    w = (state)[0]\n    self.weight = torch.mul(w, 2)\n    self.k = (state)[1]\n    self.name = \"x\"\n    return None\n",
        );
        let attrs = evaluate(&c, &state).unwrap();
        let names: Vec<String> = attrs.iter().map(|(n, _)| n.to_string_lossy()).collect();
        assert_eq!(names, ["weight", "k", "name"]);
        let IValue::Tensor(t) = &attrs[0].1 else {
            panic!()
        };
        assert_eq!(&t.storage.data[..], &floats(&[2.0, 5.0]).storage.data[..]);
        assert!(matches!(attrs[1].1, IValue::Int(3)));
    }

    #[test]
    fn anything_else_is_reported_not_guessed() {
        let state = IValue::Tuple(Arc::new(Tuple {
            items: vec![IValue::Int(1)],
            named: None,
        }));
        for body in [
            "    if (state)[0]:\n      self.a = 1\n    return None\n",
            "    self.a = torch.relu((state)[0])\n    return None\n",
            "    self.a = (state)[5]\n    return None\n",
            "    self.a.b = 1\n",
        ] {
            let e = evaluate(&class(body), &state).unwrap_err();
            assert_eq!(e.class, "__torch__.W");
            assert!(!e.statement.is_empty(), "{body}");
        }
    }
}

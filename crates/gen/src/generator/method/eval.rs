//! The evaluator: what `forward` returns, predicted in Rust from the object graph's
//! float32 tensors (checked against PyTorch by `oracle/peer/gen_forward.py`).

use super::*;

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

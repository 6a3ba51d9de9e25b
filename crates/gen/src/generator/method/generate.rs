//! Generating bodies: an [`Expr`] tree (and free functions) drawn from
//! [`Unstructured`] bytes over what `self` offers ([`Usable`]).

use super::*;

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

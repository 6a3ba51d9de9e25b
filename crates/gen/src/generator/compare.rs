//! Model equality for round-trip properties: two modules are the same model when their
//! object graphs match value for value, class names match up to save-time uniquing,
//! and tensors agree in dtype, device, view (sizes, strides, offset), bytes, and in which
//! tensors share a storage.

use std::collections::HashMap;
use std::sync::Arc;

use ptconform_core::model::mangle::original_name;
use ptconform_core::model::types::MANGLE_PREFIX;
use ptconform_core::model::{
    IValue, ObjectState, QualifiedName, Quantization, ScriptModule, Tensor,
};

/// A class name without save-time uniquing: `NAME#k` keys and `___torch_mangle_N` atoms
/// removed (both only tell colliding classes apart).
pub fn base_name(n: &QualifiedName) -> String {
    original_name(n)
        .atoms()
        .filter(|a| !a.starts_with(MANGLE_PREFIX))
        .collect::<Vec<_>>()
        .join(".")
}

#[derive(Default)]
struct Matcher {
    /// Storage of `a` → storage of `b`, and back: sharing must correspond one to one.
    storages: HashMap<usize, usize>,
    storages_back: HashMap<usize, usize>,
    /// Class name of `a` → class name of `b`: distinct classes stay distinct.
    classes: HashMap<String, String>,
    classes_back: HashMap<String, String>,
}

/// `Ok` when `a` and `b` are the same model; otherwise the path of the first difference.
pub fn same_model(a: &ScriptModule, b: &ScriptModule) -> Result<(), String> {
    let mut m = Matcher::default();
    m.value(
        &IValue::Object(a.root.clone()),
        &IValue::Object(b.root.clone()),
        "root",
        0,
    )?;
    if a.constants.len() != b.constants.len() {
        return Err(format!(
            "constants: {} vs {}",
            a.constants.len(),
            b.constants.len()
        ));
    }
    for (i, (x, y)) in a.constants.iter().zip(&b.constants).enumerate() {
        m.value(x, y, &format!("CONSTANTS.c{i}"), 0)?;
    }
    Ok(())
}

impl Matcher {
    fn class(&mut self, a: &QualifiedName, b: &QualifiedName, path: &str) -> Result<(), String> {
        if base_name(a) != base_name(b) {
            return Err(format!("{path}: class {a} vs {b}"));
        }
        let (a, b) = (a.as_str().to_string(), b.as_str().to_string());
        match (self.classes.get(&a), self.classes_back.get(&b)) {
            (None, None) => {
                self.classes.insert(a.clone(), b.clone());
                self.classes_back.insert(b, a);
                Ok(())
            }
            (Some(x), Some(y)) if *x == b && *y == a => Ok(()),
            _ => Err(format!(
                "{path}: classes {a} / {b} do not correspond one to one (merged or split)"
            )),
        }
    }

    fn value(&mut self, a: &IValue, b: &IValue, path: &str, depth: u32) -> Result<(), String> {
        if depth > 1000 {
            return Err(format!("{path}: nested too deeply"));
        }
        let diff = |what: &str| Err(format!("{path}: {what}"));
        match (a, b) {
            (IValue::None, IValue::None) => Ok(()),
            (IValue::Bool(x), IValue::Bool(y)) if x == y => Ok(()),
            (IValue::Int(x), IValue::Int(y)) if x == y => Ok(()),
            (IValue::Double(x), IValue::Double(y))
                if x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()) =>
            {
                Ok(())
            }
            (IValue::Complex(a1, a2), IValue::Complex(b1, b2))
                if a1.to_bits() == b1.to_bits() && a2.to_bits() == b2.to_bits() =>
            {
                Ok(())
            }
            (IValue::String(x), IValue::String(y)) if x.as_bytes() == y.as_bytes() => Ok(()),
            (IValue::Device(x), IValue::Device(y)) if x == y => Ok(()),
            (IValue::Tensor(x), IValue::Tensor(y)) => self.tensor(x, y, path),
            (IValue::Tuple(x), IValue::Tuple(y)) => {
                if x.items.len() != y.items.len() {
                    return diff("tuple lengths differ");
                }
                if let (Some(p), Some(q)) = (&x.named, &y.named) {
                    self.class(p, q, path)?;
                }
                for (i, (p, q)) in x.items.iter().zip(&y.items).enumerate() {
                    self.value(p, q, &format!("{path}[{i}]"), depth + 1)?;
                }
                Ok(())
            }
            (IValue::List(x), IValue::List(y)) => {
                if base_type(&x.elem_type.to_string()) != base_type(&y.elem_type.to_string()) {
                    return diff(&format!("list types {} vs {}", x.elem_type, y.elem_type));
                }
                if x.items.len() != y.items.len() {
                    return diff("list lengths differ");
                }
                for (i, (p, q)) in x.items.iter().zip(&y.items).enumerate() {
                    self.value(p, q, &format!("{path}[{i}]"), depth + 1)?;
                }
                Ok(())
            }
            (IValue::Dict(x), IValue::Dict(y)) => {
                if x.entries.len() != y.entries.len() {
                    return diff("dict sizes differ");
                }
                for (i, ((k1, v1), (k2, v2))) in x.entries.iter().zip(&y.entries).enumerate() {
                    self.value(k1, k2, &format!("{path}.key[{i}]"), depth + 1)?;
                    self.value(v1, v2, &format!("{path}.value[{i}]"), depth + 1)?;
                }
                Ok(())
            }
            (IValue::Enum(x), IValue::Enum(y)) => {
                self.class(&x.enum_type, &y.enum_type, path)?;
                self.value(&x.value, &y.value, path, depth + 1)
            }
            (IValue::Object(x), IValue::Object(y)) => {
                self.class(&x.class, &y.class, path)?;
                match (&x.state, &y.state) {
                    (ObjectState::Attributes(p), ObjectState::Attributes(q)) => {
                        if p.len() != q.len() {
                            return diff("attribute counts differ");
                        }
                        for ((n1, v1), (n2, v2)) in p.iter().zip(q) {
                            if n1.as_bytes() != n2.as_bytes() {
                                return diff(&format!(
                                    "attribute {} vs {}",
                                    n1.to_string_lossy(),
                                    n2.to_string_lossy()
                                ));
                            }
                            let sub = format!("{path}.{}", n1.to_string_lossy());
                            self.value(v1, v2, &sub, depth + 1)?;
                        }
                        Ok(())
                    }
                    (ObjectState::SetState(p), ObjectState::SetState(q)) => {
                        self.value(p, q, &format!("{path}.__getstate__()"), depth + 1)
                    }
                    _ => diff("object state kinds differ"),
                }
            }
            _ => diff(&format!("{} vs {}", a.kind_name(), b.kind_name())),
        }
    }

    fn tensor(&mut self, a: &Arc<Tensor>, b: &Arc<Tensor>, path: &str) -> Result<(), String> {
        let diff = |what: String| Err(format!("{path}: {what}"));
        if a.dtype() != b.dtype() {
            return diff(format!(
                "dtype {} vs {}",
                a.dtype().name(),
                b.dtype().name()
            ));
        }
        if a.device() != b.device() {
            return diff(format!("device {} vs {}", a.device(), b.device()));
        }
        if (&a.sizes, &a.strides, a.storage_offset) != (&b.sizes, &b.strides, b.storage_offset) {
            return diff(format!(
                "view {:?}/{:?}+{} vs {:?}/{:?}+{}",
                a.sizes, a.strides, a.storage_offset, b.sizes, b.strides, b.storage_offset
            ));
        }
        if a.requires_grad != b.requires_grad || a.conj != b.conj || a.neg != b.neg {
            return diff("requires_grad/conj/neg differ".into());
        }
        match (&a.quantization, &b.quantization) {
            (None, None) => {}
            (
                Some(Quantization::PerTensor {
                    scheme: s1,
                    scale: c1,
                    zero_point: z1,
                }),
                Some(Quantization::PerTensor {
                    scheme: s2,
                    scale: c2,
                    zero_point: z2,
                }),
            ) if s1 == s2 && c1.to_bits() == c2.to_bits() && z1 == z2 => {}
            (
                Some(Quantization::PerChannel {
                    scheme: s1,
                    scales: c1,
                    zero_points: z1,
                    axis: x1,
                }),
                Some(Quantization::PerChannel {
                    scheme: s2,
                    scales: c2,
                    zero_points: z2,
                    axis: x2,
                }),
            ) if s1 == s2 && x1 == x2 => {
                self.tensor(c1, c2, &format!("{path}.q_per_channel_scales"))?;
                self.tensor(z1, z2, &format!("{path}.q_per_channel_zero_points"))?;
            }
            _ => return diff("quantization differs".into()),
        }
        let (pa, pb) = (
            Arc::as_ptr(&a.storage) as usize,
            Arc::as_ptr(&b.storage) as usize,
        );
        match (self.storages.get(&pa), self.storages_back.get(&pb)) {
            (None, None) => {
                if a.storage.data != b.storage.data {
                    return diff("storage bytes differ".into());
                }
                if !a.device().is_meta() && a.storage.numel != b.storage.numel {
                    return diff(format!(
                        "storage sizes {} vs {}",
                        a.storage.numel, b.storage.numel
                    ));
                }
                self.storages.insert(pa, pb);
                self.storages_back.insert(pb, pa);
                Ok(())
            }
            (Some(&x), Some(&y)) if x == pb && y == pa => Ok(()),
            _ => diff("storage sharing differs".into()),
        }
    }
}

/// A type string without mangling (list element types may name classes).
fn base_type(t: &str) -> String {
    t.split(['[', ']', ',', ' '])
        .map(|atom| {
            if atom.contains('.') {
                base_name(&QualifiedName::new(atom))
            } else {
                atom.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("|")
}

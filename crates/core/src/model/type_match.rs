//! Whether a value fits a declared type, as far as a loader can tell from the values:
//! used by `check` on attributes of both formats and by the flatbuffer object-type rule.
//! Values may share children (a DAG whose tree is exponential), so each walk opens each
//! container once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{CompilationUnit, Definition, IValue, Object, TypeExpr};

/// The objects inside `v` (not looking into them). Each tuple, list and dict is opened
/// once per walk (`containers` holds the ones already opened): values that share
/// children form a DAG whose tree can be exponentially large.
pub fn collect_objects(v: &IValue, out: &mut Vec<Arc<Object>>, containers: &mut HashSet<usize>) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            IValue::Object(o) => out.push(o.clone()),
            other => {
                if other.identity().is_none_or(|id| containers.insert(id)) {
                    stack.extend(other.children());
                }
            }
        }
    }
}

/// Whether `v` can be a value of type `t` (containers checked element-wise).
pub fn value_matches(v: &IValue, t: &TypeExpr, cu: &CompilationUnit, depth: usize) -> bool {
    matches_memo(v, t, cu, depth, &mut HashMap::new())
}

/// [`value_matches`], each (container, type) pair decided once: a container shared by
/// many parents (a DAG) is compared with a given type only the first time.
fn matches_memo(
    v: &IValue,
    t: &TypeExpr,
    cu: &CompilationUnit,
    depth: usize,
    memo: &mut HashMap<(usize, usize), bool>,
) -> bool {
    if depth > 2000 {
        return true;
    }
    let key = v
        .identity()
        .filter(|_| matches!(v, IValue::List(_) | IValue::Dict(_) | IValue::Tuple(_)))
        .map(|id| (id, t as *const TypeExpr as usize));
    if let Some(k) = key {
        if let Some(&known) = memo.get(&k) {
            return known;
        }
        // A value reached again while it is being decided (a cycle) is taken as a match
        // here; its first visit decides.
        memo.insert(k, true);
    }
    let result = matches_uncached(v, t, cu, depth, memo);
    if let Some(k) = key {
        memo.insert(k, result);
    }
    result
}

fn matches_uncached(
    v: &IValue,
    t: &TypeExpr,
    cu: &CompilationUnit,
    depth: usize,
    memo: &mut HashMap<(usize, usize), bool>,
) -> bool {
    let mut value_matches = |v: &IValue, t: &TypeExpr, cu: &CompilationUnit, depth: usize| {
        matches_memo(v, t, cu, depth, memo)
    };
    let args = t.args();
    match (t.head(), v) {
        ("Any", _) => true,
        ("Optional", IValue::None) => true,
        ("Optional", _) | ("Final", _) => args
            .first()
            .is_none_or(|a| value_matches(v, a, cu, depth + 1)),
        ("NoneType", IValue::None) => true,
        ("Tensor", IValue::Tensor(_)) => true,
        ("int", IValue::Int(_)) => true,
        ("float", IValue::Double(_)) => true,
        ("bool", IValue::Bool(_)) => true,
        ("str", IValue::String(_)) => true,
        ("complex", IValue::Complex(..)) => true,
        ("Device", IValue::Device(_)) => true,
        ("List", IValue::List(l)) => args
            .first()
            .is_none_or(|a| l.items.iter().all(|x| value_matches(x, a, cu, depth + 1))),
        ("Dict", IValue::Dict(d)) => match args {
            [k, val] => d.entries.iter().all(|(dk, dv)| {
                value_matches(dk, k, cu, depth + 1) && value_matches(dv, val, cu, depth + 1)
            }),
            _ => true,
        },
        ("Tuple", IValue::Tuple(tu)) => {
            matches!(t, TypeExpr::EmptyTuple) && tu.items.is_empty()
                || (tu.items.len() == args.len()
                    && tu
                        .items
                        .iter()
                        .zip(args)
                        .all(|(x, a)| value_matches(x, a, cu, depth + 1)))
        }
        (name, _) if name.contains('.') => match cu.get_str(name) {
            Some(Definition::Class(_)) => {
                matches!(v, IValue::Object(o) if o.class.as_str() == name)
            }
            Some(Definition::Interface(_)) => matches!(v, IValue::Object(_)),
            Some(Definition::Enum(_)) => {
                matches!(v, IValue::Enum(e) if e.enum_type.as_str() == name)
            }
            Some(Definition::NamedTuple(nt)) => {
                matches!(v, IValue::Tuple(tu) if tu.items.len() == nt.fields.len()
                    && tu.items.iter().zip(&nt.fields).all(|(x, (_, ft))| value_matches(x, ft, cu, depth + 1)))
            }
            // Custom C++ classes and unknown names: nothing to compare against.
            _ => true,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::List;

    /// A list holding its child twice, 64 levels deep: a 2^64-node tree over 65 lists.
    fn shared_lists(levels: usize) -> (IValue, TypeExpr) {
        let mut v = IValue::Int(1);
        let mut ty = TypeExpr::Name("int".into());
        for _ in 0..levels {
            ty = TypeExpr::Generic("List".into(), vec![ty]);
            v = IValue::List(Arc::new(List {
                elem_type: TypeExpr::Name("int".into()),
                items: vec![v.clone(), v],
            }));
        }
        (v, ty)
    }

    #[test]
    fn shared_children_are_compared_once() {
        let (v, ty) = shared_lists(64);
        let cu = CompilationUnit::default();
        assert!(value_matches(&v, &ty, &cu, 0));
        // A mismatch deep inside is still found.
        let (v, _) = shared_lists(64);
        let (_, wrong) = shared_lists(63);
        assert!(!value_matches(&v, &wrong, &cu, 0));
    }

    #[test]
    fn shared_children_are_opened_once_when_collecting_objects() {
        let (v, _) = shared_lists(64);
        let mut out = Vec::new();
        collect_objects(&v, &mut out, &mut HashSet::new());
        assert!(out.is_empty());
    }
}

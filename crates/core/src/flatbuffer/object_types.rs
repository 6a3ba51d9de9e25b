//! The rule `flatbuffer-object-types`: PyTorch's flatbuffer writer gives all classes of one
//! qualified name one `ObjectType` (the `___torch_mangle_N` suffix dropped), so distinct
//! classes sharing a name get merged. Found three ways, all here: while reading (an
//! object with more or fewer attributes than its type names, which `torch.jit.load`
//! crashes on), and by `check` (attribute names that differ from the class in
//! `jit_sources`; values whose kinds disagree between objects of one type).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{FormatError, rules};
use crate::model::module::attribute_type_error;
use crate::model::{
    CompilationUnit, Definition, IValue, Object, ObjectState, ScriptModule, TypeExpr, type_match,
};

use super::MobileModule;
use super::read::{ObjectKind, ObjectTypeInfo};

/// The finding for an object read with `count` attribute values where its type `ty`
/// names a different number.
pub(super) fn attribute_count_mismatch(
    field: String,
    at: Option<u64>,
    ty: &ObjectTypeInfo,
    count: usize,
) -> FormatError {
    FormatError::new(
        rules::FLATBUFFER_TYPES,
        field,
        at,
        format!(
            "object of {} has {count} attributes but its ObjectType names {} (PyTorch's flatbuffer writer merges distinct classes that share a name; torch.jit.load crashes on such files)",
            ty.type_name,
            ty.attr_names.len()
        ),
    )
}

/// `ObjectType`s whose attribute names (in slot order) differ from the class of the same
/// name declared in `jit_sources`.
pub fn declared_attribute_findings(m: &MobileModule, out: &mut Vec<FormatError>) {
    for (i, t) in m.object_types.iter().enumerate() {
        if !matches!(t.kind, ObjectKind::ClassWithField | ObjectKind::Unset) {
            continue;
        }
        let Some(Definition::Class(class)) = m.module.cu.get_str(&t.type_name) else {
            continue;
        };
        let declared: Vec<&str> = class.attributes.iter().map(|a| a.name.as_str()).collect();
        if declared != t.attr_names {
            out.push(FormatError::new(
                rules::FLATBUFFER_TYPES,
                format!("Module.object_types[{i}]"),
                None,
                format!(
                    "ObjectType {} names attributes {:?} but the class declared in jit_sources has {declared:?} (PyTorch's flatbuffer writer merges distinct classes that share a qualified name)",
                    t.type_name, t.attr_names
                ),
            ));
        }
    }
}

/// Walks every object from the root (each once, named by its attribute path from
/// `Module.state_obj`), comparing values with the types declared in `jit_sources` and the
/// value kinds of objects of one class with each other.
pub fn object_findings(m: &ScriptModule, out: &mut Vec<FormatError>) {
    // Per (class, slot): the first non-None value seen and where.
    let mut first_seen: HashMap<(String, String), (IValue, String)> = HashMap::new();
    let mut reported: HashSet<(String, String)> = HashSet::new();
    let mut seen = HashSet::new();
    let mut containers = HashSet::new();
    let mut stack: Vec<(Arc<Object>, String)> =
        vec![(m.root.clone(), "Module.state_obj".to_string())];
    let mut children = Vec::new();
    while let Some((o, path)) = stack.pop() {
        if !seen.insert(Arc::as_ptr(&o) as usize) {
            continue;
        }
        let class = m.cu.class(&o.class);
        let ObjectState::Attributes(attrs) = &o.state else {
            if let ObjectState::SetState(s) = &o.state {
                push_objects(
                    s,
                    || format!("{path}.__getstate__()"),
                    &mut stack,
                    &mut containers,
                );
            }
            continue;
        };
        for (slot, (name, value)) in attrs.iter().enumerate() {
            let n = name.to_string_lossy();
            // Built only when a finding or a child needs it (5,000 attributes, few findings).
            let at = || format!("{path}.{n}");
            let decl = class.and_then(|c| c.attribute_in_slot(slot, &n));
            if let Some(decl) = decl
                && !type_match::value_matches(value, &decl.ty, &m.cu, 0)
            {
                out.push(declared_type_violation(
                    &o.class,
                    &n,
                    &decl.ty,
                    value,
                    &at(),
                    &m.cu,
                ));
            }
            if !matches!(value, IValue::None) {
                let key = (o.class.as_str().to_string(), n.clone());
                match first_seen.get(&key) {
                    None => {
                        first_seen.insert(key, (value.clone(), at()));
                    }
                    Some((first, first_at)) => {
                        let both_declared_ok = decl.is_some_and(|d| {
                            type_match::value_matches(first, &d.ty, &m.cu, 0)
                                && type_match::value_matches(value, &d.ty, &m.cu, 0)
                        });
                        if first.kind_name() != value.kind_name()
                            && !both_declared_ok
                            && reported.insert(key)
                        {
                            out.push(FormatError::new(
                                rules::FLATBUFFER_TYPES,
                                at(),
                                None,
                                format!(
                                    "objects of {} hold a {} here but a {} at {first_at}: one class's attribute has one type, so distinct classes sharing this name were merged into one ObjectType",
                                    o.class,
                                    value.kind_name(),
                                    first.kind_name()
                                ),
                            ));
                        }
                    }
                }
            }
            push_objects(value, at, &mut children, &mut containers);
        }
        // Visit in slot order (pre-order), so findings name the later object.
        stack.extend(children.drain(..).rev());
    }
}

/// A value that does not match its declared type. An object of another class where a
/// class is declared is what PyTorch's writer produces for colliding names (the
/// declarations in `jit_sources` are mangled, `object_types` are not).
fn declared_type_violation(
    class: &crate::model::QualifiedName,
    attr: &str,
    ty: &TypeExpr,
    value: &IValue,
    at: &str,
    cu: &CompilationUnit,
) -> FormatError {
    let declared = ty.unwrap_optional();
    if let (Some(Definition::Class(_)), IValue::Object(o)) = (cu.get_str(declared.head()), value) {
        return FormatError::new(
            rules::FLATBUFFER_TYPES,
            at,
            None,
            format!(
                "{class}.{attr} is declared {ty} in jit_sources but holds an object of ObjectType {}: PyTorch's flatbuffer writer gives all classes of one qualified name one ObjectType (without ___torch_mangle_N), so distinct classes were merged",
                o.class
            ),
        );
    }
    attribute_type_error(class, attr, ty, value, at)
}

/// Pushes the objects directly inside `v` (itself, or inside containers) with `path`.
fn push_objects(
    v: &IValue,
    path: impl Fn() -> String,
    stack: &mut Vec<(Arc<Object>, String)>,
    containers: &mut HashSet<usize>,
) {
    // Tensors and scalars hold no objects: most attributes end here, without a path.
    if matches!(
        v,
        IValue::Tensor(_) | IValue::Int(_) | IValue::Double(_) | IValue::Bool(_) | IValue::None
    ) {
        return;
    }
    let mut objects = Vec::new();
    type_match::collect_objects(v, &mut objects, containers);
    if !objects.is_empty() {
        let path = path();
        stack.extend(objects.into_iter().map(|o| (o, path.clone())));
    }
}

//! A loaded script module: the root object plus the types it needs, with the views
//! PyTorch's Python API gives of it (`named_modules`, `named_parameters`, ...).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use indexmap::IndexMap;

use super::{CompilationUnit, IValue, Object, ObjectState, QualifiedName, Str, Tensor, type_match};
use crate::error::FormatError;

/// A loaded TorchScript module: the root object, the compilation unit declaring its
/// classes, constants and extra files.
#[derive(Clone, Debug)]
pub struct ScriptModule {
    /// The root module object (`data.pkl`'s value).
    pub root: Arc<Object>,
    /// The classes, functions and source files of `code/`.
    pub cu: Arc<CompilationUnit>,
    /// Tensor constants referenced from code as `CONSTANTS.cN` (`constants.pkl`).
    pub constants: Vec<IValue>,
    /// Extra files that were requested at load time (or are to be saved).
    pub extra_files: IndexMap<String, Bytes>,
    /// When read from a pickle: identities of the heap values that were memoized there,
    /// so a re-save can repeat the writing process's memo decisions exactly.
    pub memoized: Option<Arc<rustc_hash::FxHashSet<usize>>>,
}

/// A submodule as `named_modules()` reports it.
#[derive(Clone, Debug)]
pub struct NamedModule {
    /// The dotted attribute path from the root (`""` for the root, `layer.0`).
    pub name: String,
    /// The submodule's object.
    pub object: Arc<Object>,
}

/// A parameter or buffer as `named_parameters()` / `named_buffers()` report it.
#[derive(Clone, Debug)]
pub struct NamedTensor {
    /// The dotted path from the root (`layer.0.weight`).
    pub name: String,
    /// The tensor.
    pub tensor: Arc<Tensor>,
}

impl ScriptModule {
    /// The root module's class.
    pub fn qualified_name(&self) -> &QualifiedName {
        &self.root.class
    }

    /// Direct submodules of `obj`: attributes holding objects of module classes, in
    /// slot order.
    pub fn children<'a>(
        &'a self,
        obj: &'a Object,
    ) -> impl Iterator<Item = (String, Arc<Object>)> + 'a {
        let children: Vec<(String, Arc<Object>)> = self
            .loaded_attributes(obj)
            .iter()
            .filter_map(|(name, v)| match v {
                IValue::Object(o) if self.cu.is_module_class(&o.class) => {
                    Some((name.to_string_lossy(), o.clone()))
                }
                _ => None,
            })
            .collect();
        children.into_iter()
    }

    /// The attributes of `obj` as `torch.jit.load` leaves them: the pickled ones, or, for
    /// a module pickled through `__getstate__`, what its `__setstate__` assigns (when
    /// ptconform can evaluate it, [`super::setstate`]; else none, and
    /// [`ScriptModule::notes`] says so).
    pub fn loaded_attributes<'a>(&self, obj: &'a Object) -> std::borrow::Cow<'a, [(Str, IValue)]> {
        match &obj.state {
            ObjectState::Attributes(a) => std::borrow::Cow::Borrowed(a),
            ObjectState::SetState(state) => match self.cu.class(&obj.class) {
                Some(class) if class.kind == super::ClassKind::Module && class.has_setstate() => {
                    std::borrow::Cow::Owned(
                        super::setstate::evaluate(class, state).unwrap_or_default(),
                    )
                }
                _ => std::borrow::Cow::Borrowed(&[]),
            },
        }
    }

    /// What `inspect` cannot report exactly: each module whose `__setstate__` ptconform
    /// does not evaluate (its parameters and buffers are then missing from the facts).
    pub fn notes(&self) -> Vec<String> {
        self.notes_in(&self.named_modules())
    }

    /// [`Self::notes`] over `modules`, this module's [`Self::named_modules`] (for callers
    /// that need several of these lists: the tree is walked once).
    pub fn notes_in(&self, modules: &[NamedModule]) -> Vec<String> {
        let mut out = Vec::new();
        for m in modules {
            if let ObjectState::SetState(state) = &m.object.state
                && let Some(class) = self.cu.class(&m.object.class)
                && class.kind == super::ClassKind::Module
                && class.has_setstate()
                // With no `__parameters__` or `__buffers__` (quantized convolutions, ...)
                // nothing it does can change the facts.
                && !(class.parameters.is_empty() && class.buffers.is_empty())
                && let Err(e) = super::setstate::evaluate(class, state)
            {
                let at = if m.name.is_empty() { "<root>" } else { &m.name };
                out.push(format!("{at}: {e}"));
            }
        }
        out
    }

    /// Pre-order module tree, root named `""`, like `Module.named_modules()`. Script
    /// modules get a fresh Python wrapper per attribute, so a module object reached twice
    /// is reported twice (not de-duplicated). Cycles are impossible in a pickled tree,
    /// but depth is bounded anyway by the reader's nesting limit.
    pub fn named_modules(&self) -> Vec<NamedModule> {
        let mut out = Vec::new();
        let mut stack = vec![(String::new(), self.root.clone())];
        while let Some((name, obj)) = stack.pop() {
            let children: Vec<_> = self.children(&obj).collect();
            for (child_name, child) in children.into_iter().rev() {
                let full = if name.is_empty() {
                    child_name
                } else {
                    format!("{name}.{child_name}")
                };
                stack.push((full, child));
            }
            out.push(NamedModule { name, object: obj });
        }
        out
    }

    fn named_tensors(
        &self,
        modules: &[NamedModule],
        pick: impl Fn(&super::ClassDef) -> &[String],
    ) -> Vec<NamedTensor> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for m in modules {
            let Some(class) = self.cu.class(&m.object.class) else {
                continue;
            };
            // A set: a module may list thousands of buffers.
            let listed: rustc_hash::FxHashSet<&str> =
                pick(class).iter().map(String::as_str).collect();
            for (attr, value) in self.loaded_attributes(&m.object).iter() {
                // Borrowed unless the name is not UTF-8: most attributes are not listed.
                let attr = String::from_utf8_lossy(attr.as_bytes());
                if !listed.contains(&*attr) {
                    continue;
                }
                if let IValue::Tensor(t) = value {
                    // Python tensors keep one wrapper per tensor, so a tensor reached twice
                    // is reported once (nn.Module's duplicate removal).
                    if seen.insert(Arc::as_ptr(t) as usize) {
                        let name = if m.name.is_empty() {
                            attr.into_owned()
                        } else {
                            format!("{}.{attr}", m.name)
                        };
                        out.push(NamedTensor {
                            name,
                            tensor: t.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Like `named_parameters()`: attributes listed in `__parameters__` holding tensors.
    pub fn named_parameters(&self) -> Vec<NamedTensor> {
        self.named_parameters_in(&self.named_modules())
    }

    /// [`Self::named_parameters`] of `modules`, this module's [`Self::named_modules`].
    pub fn named_parameters_in(&self, modules: &[NamedModule]) -> Vec<NamedTensor> {
        self.named_tensors(modules, |c| &c.parameters)
    }

    /// Like `named_buffers()`: attributes listed in `__buffers__` holding tensors.
    pub fn named_buffers(&self) -> Vec<NamedTensor> {
        self.named_buffers_in(&self.named_modules())
    }

    /// [`Self::named_buffers`] of `modules`, this module's [`Self::named_modules`].
    pub fn named_buffers_in(&self, modules: &[NamedModule]) -> Vec<NamedTensor> {
        self.named_tensors(modules, |c| &c.buffers)
    }
}

/// Most module-tree paths `named_modules()` may produce. A module object reachable by
/// many paths (a shared-submodule DAG) could otherwise make the tree exponentially big.
pub const MAX_MODULE_PATHS: usize = 1_000_000;

/// Most bytes all module-tree paths (`a.b.c`, dot-joined) may take together: tools that
/// list the tree (`inspect`, `diff`) build every path, so long names multiply with the
/// count (500,000 paths of 1,000-byte names would be half a gigabyte). The largest real
/// models have tens of thousands of modules with names of tens of bytes: a few MiB.
pub const MAX_MODULE_PATH_BYTES: u64 = 64 << 20;

/// Checks what PyTorch's loader checks when it rebuilds objects: each object's class is a
/// defined class, each pickled attribute is declared by it, each enum value is a member;
/// and that the module tree stays of bounded size.
pub fn validate_objects(m: &ScriptModule) -> Result<(), crate::error::FormatError> {
    use super::compilation_unit::unknown_type;
    use super::{Definition, ObjectState};
    use crate::error::{FormatError, rules};
    let err = |rule, msg: String| FormatError::new(rule, "data.pkl", None, msg);
    m.cu.check_type_names()?;
    let mut seen = rustc_hash::FxHashSet::default();
    let mut stack: Vec<&IValue> = Vec::new();
    let root = IValue::Object(m.root.clone());
    stack.push(&root);
    stack.extend(m.constants.iter());
    while let Some(v) = stack.pop() {
        // Tensors hold nothing to check: no need to remember them (thousands in a module).
        if matches!(v, IValue::Tensor(_)) {
            continue;
        }
        if let Some(id) = v.identity()
            && !seen.insert(id)
        {
            continue;
        }
        match v {
            IValue::Object(o) if super::torchbind::is_torchbind_name(&o.class) => {
                // Defined in C++: its __setstate__ takes the state, whatever PyTorch's
                // registration then makes of it. A TorchBind object pickled with an
                // attribute dict would be passed that dict by torch.jit.load.
                match &o.state {
                    ObjectState::SetState(s) => stack.push(s),
                    ObjectState::Attributes(_) => {
                        return Err(err(
                            rules::OBJECT_ATTRIBUTES,
                            format!(
                                "TorchBind object {} is pickled with an attribute dict; its C++ __setstate__ takes its __getstate__ value",
                                o.class
                            ),
                        ));
                    }
                }
            }
            IValue::Object(o) => {
                let class = match m.cu.get(&o.class) {
                    Some(Definition::Class(c)) => c,
                    Some(other) => {
                        return Err(unknown_type(
                            "data.pkl",
                            format!(
                                "object of {} which is a {}, not a class",
                                o.class,
                                other.kind_name()
                            ),
                        ));
                    }
                    None => {
                        return Err(unknown_type(
                            "data.pkl",
                            format!("class {} is not defined", o.class),
                        ));
                    }
                };
                match &o.state {
                    ObjectState::Attributes(attrs) => {
                        for (slot, (name, value)) in attrs.iter().enumerate() {
                            let n = match name.as_str() {
                                Some(n) => std::borrow::Cow::Borrowed(n),
                                None => String::from_utf8_lossy(name.as_bytes()),
                            };
                            if class.attribute_in_slot(slot, &n).is_none() {
                                return Err(err(
                                    rules::OBJECT_ATTRIBUTES,
                                    format!(
                                        "{} has no attribute {n:?} but the pickle sets it",
                                        o.class
                                    ),
                                ));
                            }
                            stack.push(value);
                        }
                    }
                    ObjectState::SetState(s) => {
                        if !class.has_setstate() {
                            return Err(err(
                                rules::OBJECT_ATTRIBUTES,
                                format!(
                                    "{} is pickled in __setstate__ form but has no __getstate__/__setstate__",
                                    o.class
                                ),
                            ));
                        }
                        stack.push(s);
                    }
                }
            }
            IValue::Enum(e) => match m.cu.get(&e.enum_type) {
                Some(Definition::Enum(_)) => {}
                _ => {
                    return Err(unknown_type(
                        "data.pkl",
                        format!("enum {} is not defined", e.enum_type),
                    ));
                }
            },
            IValue::Tuple(t) => stack.extend(t.items.iter()),
            IValue::List(l) => stack.extend(l.items.iter()),
            IValue::Dict(d) => {
                for (k, v) in &d.entries {
                    stack.push(k);
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
    // Bound the module tree's path count before anyone enumerates it.
    let mut paths = 0usize;
    let mut path_bytes = 0u64;
    // Each module with the length of its dotted path.
    let mut stack = vec![(m.root.clone(), 0u64)];
    while let Some((o, len)) = stack.pop() {
        paths += 1;
        path_bytes += len;
        if paths > MAX_MODULE_PATHS {
            return Err(err(
                rules::MODULE_TREE,
                format!(
                    "the module tree has more than {MAX_MODULE_PATHS} paths (shared submodules)"
                ),
            ));
        }
        if path_bytes > MAX_MODULE_PATH_BYTES {
            return Err(err(
                rules::MODULE_TREE,
                format!(
                    "the module tree's paths take more than {MAX_MODULE_PATH_BYTES} bytes together (long names on many paths)"
                ),
            ));
        }
        let prefix = if len == 0 { 0 } else { len + 1 };
        stack.extend(
            m.children(&o)
                .map(|(name, c)| (c, prefix + name.len() as u64)),
        );
    }
    Ok(())
}

/// Most paths by which objects (of any class) may be reached from the root module.
pub const MAX_OBJECT_PATHS: u64 = 1_000_000;

/// `module-tree` for plain objects, a `check` finding: objects shared by many parents
/// (a DAG whose tree is exponential). ptconform walks each object once, but PyTorch's
/// loader does not: `torch.jit.load` of a 40-level object DAG (2^40 paths, 4 KB) did not
/// finish in 60 s, where the same shape of lists loads in 4 s. Counted, not walked:
/// the paths to a value are summed once per value.
pub fn object_path_finding(m: &ScriptModule) -> Option<FormatError> {
    fn paths(v: &IValue, memo: &mut rustc_hash::FxHashMap<usize, u64>, depth: usize) -> u64 {
        if depth > 4_000 || matches!(v, IValue::Tensor(_)) {
            return 0;
        }
        let id = v.identity();
        if let Some(n) = id.and_then(|id| memo.get(&id)) {
            return *n;
        }
        let own = u64::from(matches!(v, IValue::Object(_)));
        let n = v
            .children()
            .into_iter()
            .fold(own, |n, c| n.saturating_add(paths(c, memo, depth + 1)))
            .min(MAX_OBJECT_PATHS + 1);
        if let Some(id) = id {
            memo.insert(id, n);
        }
        n
    }
    let n = paths(&IValue::Object(m.root.clone()), &mut Default::default(), 0);
    (n > MAX_OBJECT_PATHS).then(|| {
        FormatError::new(
            crate::error::rules::MODULE_TREE,
            "data.pkl",
            None,
            format!(
                "objects are reached by more than {MAX_OBJECT_PATHS} paths (objects shared by many parents): PyTorch's loader walks each path and does not finish on such files"
            ),
        )
    })
}

/// Compares every object attribute with its declared type. PyTorch's loader does not do
/// this (it accepts a bool in an `int` slot), so a mismatch is a conformance finding.
pub fn attribute_findings(m: &ScriptModule, out: &mut Vec<FormatError>) {
    let mut seen = HashSet::new();
    let mut containers = std::collections::HashSet::new();
    let mut stack = vec![m.root.clone()];
    while let Some(o) = stack.pop() {
        if !seen.insert(Arc::as_ptr(&o) as usize) {
            continue;
        }
        let Some(class) = m.cu.class(&o.class) else {
            continue;
        };
        if let ObjectState::Attributes(attrs) = &o.state {
            for (slot, (name, value)) in attrs.iter().enumerate() {
                let n = name.to_string_lossy();
                if let Some(decl) = class.attribute_in_slot(slot, &n)
                    && !type_match::value_matches(value, &decl.ty, &m.cu, 0)
                {
                    out.push(attribute_type_error(
                        &o.class, &n, &decl.ty, value, "data.pkl",
                    ));
                }
                type_match::collect_objects(value, &mut stack, &mut containers);
            }
            // PyTorch pickles attributes in slot order, so the names usually line up; a
            // set only when they do not (a linear search per attribute was quadratic: 5,000
            // buffers cost 25 million comparisons).
            let in_order = class.attributes.len() <= attrs.len()
                && class
                    .attributes
                    .iter()
                    .zip(attrs.iter())
                    .all(|(a, (n, _))| n.as_bytes() == a.name.as_bytes());
            let missing: Vec<&str> = if in_order {
                Vec::new()
            } else {
                let pickled: std::collections::HashSet<&[u8]> =
                    attrs.iter().map(|(n, _)| n.as_bytes()).collect();
                class
                    .attributes
                    .iter()
                    .filter(|a| !pickled.contains(a.name.as_bytes()))
                    .map(|a| a.name.as_str())
                    .collect()
            };
            if !missing.is_empty() {
                out.push(FormatError::new(
                    crate::error::rules::OBJECT_ATTRIBUTES,
                    "data.pkl",
                    None,
                    format!("{} object lacks declared attributes {missing:?}", o.class),
                ));
            }
        }
    }
}

/// The finding for attribute `attr` of a `class` object holding `value`, which is not of
/// its declared type `ty`.
pub fn attribute_type_error(
    class: &QualifiedName,
    attr: &str,
    ty: &super::TypeExpr,
    value: &IValue,
    record: impl Into<String>,
) -> FormatError {
    FormatError::new(
        crate::error::rules::ATTRIBUTE_TYPE,
        record,
        None,
        format!(
            "{class}.{attr} is declared {ty} but holds a {}",
            value.kind_name()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TypeExpr;
    use crate::model::compose::ModuleBuilder;

    /// 18 levels of a module holding one child module twice, under names of `len`
    /// bytes: 2^19 - 1 paths (under the path limit), each as long as its depth times
    /// `len`.
    fn shared_tree(len: usize) -> ScriptModule {
        let mut m = ModuleBuilder::new("__torch__.L0").build();
        for level in 1..=18 {
            let child = m.root.clone();
            let mut b = ModuleBuilder::new(&format!("__torch__.L{level}"));
            for d in m.cu.definitions() {
                b.define(d.clone());
            }
            for side in ["a", "b"] {
                b.attribute(
                    &side.repeat(len),
                    TypeExpr::name(child.class.as_str()),
                    IValue::Object(child.clone()),
                );
            }
            m = b.build();
        }
        m
    }

    #[test]
    fn module_paths_are_bounded_in_bytes_not_only_in_count() {
        assert!(validate_objects(&shared_tree(1)).is_ok());
        let e = validate_objects(&shared_tree(1000)).unwrap_err();
        assert_eq!(e.rule, crate::error::rules::MODULE_TREE, "{e}");
        assert!(e.message.contains("bytes"), "{e}");
    }
}

//! The compilation unit: every named type and function of one loaded archive, by
//! qualified name, plus the source files they came from (kept for exact re-saving).

use bytes::Bytes;
use indexmap::IndexMap;

use super::{ClassDef, ClassKind, Definition, QualifiedName, TypeExpr};
use crate::error::{FormatError, rules};

/// One `code/` file as read: its qualifier, text, optional `.debug_pkl`, and the names it
/// defines in file order.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The file's qualifier (`__torch__.pkgx.mods` for `code/__torch__/pkgx/mods.py`).
    pub qualifier: String,
    /// The file's text, exactly as stored.
    pub text: String,
    /// The matching `code/....py.debug_pkl` record's bytes, if the archive has one.
    pub debug_pkl: Option<Bytes>,
    /// The qualified names the file defines, in file order.
    pub definitions: Vec<QualifiedName>,
}

/// Every named type and function of an archive's `code/`, by qualified name.
#[derive(Clone, Debug, Default)]
pub struct CompilationUnit {
    definitions: IndexMap<QualifiedName, Definition>,
    /// Source files in archive order.
    pub files: Vec<SourceFile>,
}

/// The finding for a type that something names and no definition provides (PyTorch:
/// "Unknown type name"): the one constructor of `type-unknown`.
pub fn unknown_type(record: impl Into<String>, message: impl Into<String>) -> FormatError {
    FormatError::new(rules::TYPE_UNKNOWN, record, None, message)
}

impl CompilationUnit {
    /// An empty compilation unit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether every type the definitions name can be resolved as PyTorch's importer
    /// resolves them: no field type naming its own class (directly or through others),
    /// no unqualified name outside TorchScript's base types.
    pub fn check_type_names(&self) -> Result<(), FormatError> {
        if let Some(cycle) = self.field_type_cycle() {
            let path = cycle
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(" -> ");
            let file = crate::model::types::qualifier_to_code_path(cycle[0].qualifier());
            return Err(unknown_type(
                file,
                format!(
                    "field types name their own class ({path}): PyTorch resolves them before the class exists and fails with \"Unknown type name\""
                ),
            ));
        }
        for def in self.definitions() {
            let mut unknown = Vec::new();
            def.declared_types()
                .for_each(|t| t.unknown_base_names(&mut unknown));
            if def.declared_types().any(TypeExpr::has_optional_of_none) {
                return Err(unknown_type(
                    crate::model::types::qualifier_to_code_path(def.name().qualifier()),
                    format!(
                        "{} declares Optional[None]: PyTorch's type parser fails an internal assert on it (\"INTERNAL ASSERT FAILED\")",
                        def.name()
                    ),
                ));
            }
            if let Some(name) = unknown.first() {
                return Err(unknown_type(
                    crate::model::types::qualifier_to_code_path(def.name().qualifier()),
                    format!(
                        "{} names the type {name:?}, which TorchScript does not know (PyTorch: \"Unknown type name\")",
                        def.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// [`define`](Self::define), a second definition of a name being the finding
    /// `type-redefined` on `record` (the file that defines it again).
    pub fn define_in(
        &mut self,
        def: Definition,
        record: impl Into<String>,
    ) -> Result<(), FormatError> {
        self.define(def).map_err(|name| {
            FormatError::new(
                rules::TYPE_REDEFINED,
                record,
                None,
                format!("{name} is defined twice"),
            )
        })
    }

    /// Adds a definition; a second definition of the same name is refused (returning
    /// the name), as PyTorch's loader refuses to define a class twice in one unit.
    pub fn define(&mut self, def: Definition) -> Result<(), QualifiedName> {
        if self.definitions.contains_key(def.name()) {
            return Err(def.name().clone());
        }
        self.definitions.insert(def.name().clone(), def);
        Ok(())
    }

    /// The definition of `name`, if any.
    pub fn get(&self, name: &QualifiedName) -> Option<&Definition> {
        self.definitions.get(name)
    }

    /// The definition of the dotted name `name`, if any.
    pub fn get_str(&self, name: &str) -> Option<&Definition> {
        self.definitions.get(&QualifiedName::new(name))
    }

    /// The class `name`, if it is defined and is a class (module or script class).
    pub fn class(&self, name: &QualifiedName) -> Option<&ClassDef> {
        match self.definitions.get(name) {
            Some(Definition::Class(c)) => Some(c),
            _ => None,
        }
    }

    /// Whether `name` is a defined `nn.Module` class.
    pub fn is_module_class(&self, name: &QualifiedName) -> bool {
        self.class(name)
            .is_some_and(|c| c.kind == ClassKind::Module)
    }

    /// A cycle of classes (or NamedTuples) whose attribute, constant or field types name
    /// each other, or one that names itself: `[A, B, A]`. PyTorch defines a class's type
    /// from its field annotations before the class exists, so such a file fails to load
    /// with "Unknown type name" (method signatures may name their own class; they are
    /// compiled after it). Iterative, each definition visited once.
    pub fn field_type_cycle(&self) -> Option<Vec<QualifiedName>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Unseen,
            Open,
            Done,
        }
        let index = |n: &QualifiedName| {
            self.definitions.get_index_of(n).filter(|&i| {
                matches!(
                    self.definitions[i],
                    Definition::Class(_) | Definition::NamedTuple(_)
                )
            })
        };
        let edges: Vec<Vec<usize>> = self
            .definitions
            .values()
            .map(|d| d.field_types().iter().filter_map(index).collect())
            .collect();
        let mut mark = vec![Mark::Unseen; edges.len()];
        for start in 0..edges.len() {
            if mark[start] != Mark::Unseen {
                continue;
            }
            // (node, next edge to follow); the open path is the stack itself.
            let mut path: Vec<(usize, usize)> = vec![(start, 0)];
            mark[start] = Mark::Open;
            while let Some(&mut (node, ref mut next)) = path.last_mut() {
                let Some(&to) = edges[node].get(*next) else {
                    mark[node] = Mark::Done;
                    path.pop();
                    continue;
                };
                *next += 1;
                match mark[to] {
                    Mark::Unseen => {
                        mark[to] = Mark::Open;
                        path.push((to, 0));
                    }
                    Mark::Open => {
                        let from = path
                            .iter()
                            .position(|&(n, _)| n == to)
                            .expect("open is on the path");
                        let mut cycle: Vec<QualifiedName> = path[from..]
                            .iter()
                            .map(|&(n, _)| self.definitions.get_index(n).expect("index").0.clone())
                            .collect();
                        cycle.push(cycle[0].clone());
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            }
        }
        None
    }

    /// Every definition, in the order it was defined.
    pub fn definitions(&self) -> impl Iterator<Item = &Definition> {
        self.definitions.values()
    }

    /// Number of definitions.
    pub fn len(&self) -> usize {
        self.definitions.len()
    }

    /// Whether nothing is defined.
    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty()
    }
}

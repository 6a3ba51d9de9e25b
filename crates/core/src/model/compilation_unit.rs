//! The compilation unit: every named type and function of one loaded archive, by
//! qualified name, plus the source files they came from (kept for exact re-saving).

use bytes::Bytes;
use indexmap::IndexMap;

use super::{ClassDef, ClassKind, Definition, QualifiedName};

/// One `code/` file as read: its qualifier, text, optional `.debug_pkl`, and the names it
/// defines in file order.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub qualifier: String,
    pub text: String,
    pub debug_pkl: Option<Bytes>,
    pub definitions: Vec<QualifiedName>,
}

#[derive(Clone, Debug, Default)]
pub struct CompilationUnit {
    definitions: IndexMap<QualifiedName, Definition>,
    /// Source files in archive order.
    pub files: Vec<SourceFile>,
}

impl CompilationUnit {
    pub fn new() -> Self {
        Self::default()
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

    pub fn get(&self, name: &QualifiedName) -> Option<&Definition> {
        self.definitions.get(name)
    }

    pub fn get_str(&self, name: &str) -> Option<&Definition> {
        self.definitions.get(&QualifiedName::new(name))
    }

    pub fn class(&self, name: &QualifiedName) -> Option<&ClassDef> {
        match self.definitions.get(name) {
            Some(Definition::Class(c)) => Some(c),
            _ => None,
        }
    }

    pub fn is_module_class(&self, name: &QualifiedName) -> bool {
        self.class(name)
            .is_some_and(|c| c.kind == ClassKind::Module)
    }

    pub fn definitions(&self) -> impl Iterator<Item = &Definition> {
        self.definitions.values()
    }

    pub fn len(&self) -> usize {
        self.definitions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty()
    }
}

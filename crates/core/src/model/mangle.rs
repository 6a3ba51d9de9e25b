//! `___torch_mangle_N`: PyTorch's save-time uniquing of qualified names
//! (`spec/mangling.md` §1–2).

use std::collections::{HashMap, HashSet};

use super::QualifiedName;
use super::types::MANGLE_PREFIX;

/// Applies the mangling step once with `counter`, advancing it: an atom already carrying
/// `___torch_mangle_k` is renumbered to `max(counter, k + 1)`; otherwise a new atom
/// `___torch_mangle_<counter>` is inserted before the last atom.
pub fn mangle(name: &QualifiedName, counter: &mut u64) -> QualifiedName {
    let mut atoms: Vec<String> = name.atoms().map(str::to_string).collect();
    if let Some(i) = atoms.iter().position(|a| a.contains(MANGLE_PREFIX)) {
        let atom = &atoms[i];
        let pos = atom.find(MANGLE_PREFIX).unwrap();
        let digits: String = atom[pos + MANGLE_PREFIX.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if let Ok(k) = digits.parse::<u64>() {
            *counter = (*counter).max(k.saturating_add(1));
        }
        atoms[i] = format!("{}{MANGLE_PREFIX}{}", &atom[..pos], *counter);
    } else {
        let last = atoms.len().saturating_sub(1);
        atoms.insert(last, format!("{MANGLE_PREFIX}{}", *counter));
    }
    *counter += 1;
    QualifiedName::new(atoms.join("."))
}

/// Separates types that share a qualified name but come from different compilation
/// units. Inside one combined unit such a type is keyed `NAME#k`; `#` cannot occur in a
/// TorchScript name, so the key never leaks into an archive: the uniquer maps it back.
pub const KEY_SEPARATOR: char = '#';

/// The name a type had in its own compilation unit (the key without `#k`).
pub fn original_name(key: &QualifiedName) -> QualifiedName {
    match key.as_str().split_once(KEY_SEPARATOR) {
        Some((base, _)) => QualifiedName::new(base),
        None => key.clone(),
    }
}

/// One save's uniquer: the first type to ask for a name keeps it, later distinct types
/// get mangled names, one counter per save.
#[derive(Debug, Default)]
pub struct NameUniquer {
    counter: u64,
    assigned: HashMap<QualifiedName, QualifiedName>,
    used: HashSet<QualifiedName>,
}

impl NameUniquer {
    /// A uniquer that has assigned no names yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The archive name for the type keyed `key` (asked in PyTorch's order).
    pub fn unique(&mut self, key: &QualifiedName) -> QualifiedName {
        if let Some(n) = self.assigned.get(key) {
            return n.clone();
        }
        let mut name = original_name(key);
        while self.used.contains(&name) {
            name = mangle(&name, &mut self.counter);
        }
        self.used.insert(name.clone());
        self.assigned.insert(key.clone(), name.clone());
        name
    }

    /// The name assigned so far, if any.
    pub fn get(&self, key: &QualifiedName) -> Option<&QualifiedName> {
        self.assigned.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mangle_inserts_or_renumbers() {
        let mut c = 0;
        assert_eq!(
            mangle(&"__torch__.Foo".into(), &mut c).as_str(),
            "__torch__.___torch_mangle_0.Foo"
        );
        assert_eq!(
            mangle(&"__torch__.torch.nn.modules.linear.Linear".into(), &mut c).as_str(),
            "__torch__.torch.nn.modules.linear.___torch_mangle_1.Linear"
        );
        let mut c = 3;
        assert_eq!(
            mangle(&"__torch__.___torch_mangle_0.Foo".into(), &mut c).as_str(),
            "__torch__.___torch_mangle_3.Foo"
        );
        assert_eq!(c, 4);
        let mut c = 0;
        assert_eq!(
            mangle(&"__torch__.___torch_mangle_7.Foo".into(), &mut c).as_str(),
            "__torch__.___torch_mangle_8.Foo"
        );
    }

    /// mangling.md §2.3: two loaded copies of the ContainsBoth archive under Outer.x/.y.
    #[test]
    fn nested_contains_both_numbering() {
        let mut u = NameUniquer::new();
        let x = [
            "__torch__.ContainsBoth",
            "__torch__.Foo",
            "__torch__.torch.nn.modules.linear.Linear",
            "__torch__.___torch_mangle_0.Foo",
            "__torch__.torch.nn.modules.linear.___torch_mangle_1.Linear",
        ];
        u.unique(&"__torch__.Outer".into());
        for n in x {
            assert_eq!(u.unique(&n.into()).as_str(), n);
        }
        let got: Vec<String> = x
            .iter()
            .map(|n| {
                u.unique(&format!("{n}#1").as_str().into())
                    .as_str()
                    .to_string()
            })
            .collect();
        assert_eq!(
            got,
            [
                "__torch__.___torch_mangle_0.ContainsBoth",
                "__torch__.___torch_mangle_1.Foo",
                "__torch__.torch.nn.modules.linear.___torch_mangle_2.Linear",
                "__torch__.___torch_mangle_3.Foo",
                "__torch__.torch.nn.modules.linear.___torch_mangle_4.Linear",
            ]
        );
        // Asking again gives the same answer.
        assert_eq!(
            u.unique(&"__torch__.Foo#1".into()).as_str(),
            "__torch__.___torch_mangle_1.Foo"
        );
    }
}

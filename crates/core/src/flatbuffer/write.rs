//! Writing `PTMF` flatbuffers byte-identical to PyTorch's (spec/flatbuffer.md §6).
//!
//! The order in which objects are created decides every byte, so this follows PyTorch's
//! serializer step by step: the NONE ivalue; each method's function (operators,
//! constants, type strings, schema, `self`'s class, debug handles, then the function);
//! the root object post-order; extra files; jit sources; jit constants; storages
//! (32-byte aligned); then the constant, type and ivalue vectors and the Module table.
//! Where PyTorch's C++ evaluates call arguments right to left, the later argument is
//! created first here.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::builder::{Builder, Loc};
use super::read::{IDENTIFIER, MobileModule, ObjectKind, ObjectTypeInfo};
use crate::error::{Error, FormatError, rules};
use crate::model::bytecode::{Arg, BytecodeFunction};
use crate::model::compose::{Renames, rename_type};
use crate::model::mangle::{KEY_SEPARATOR, NameUniquer, original_name};
use crate::model::{
    IValue, Object, ObjectState, QScheme, QualifiedName, Quantization, ScriptModule, Storage,
    Tensor, TypeExpr,
};

/// How classes that share a qualified name (distinct types from different compilation
/// units, keyed `NAME#k` in the model) are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NameMode {
    /// Give each distinct class its own name (`___torch_mangle_N`), as the zip writer
    /// does: the file loads correctly in PyTorch.
    #[default]
    Unique,
    /// Reproduce PyTorch 2.15's flatbuffer writer: object types are de-duplicated by
    /// raw name, so colliding classes merge into one `ObjectType` (and PyTorch's own
    /// loader then misreads or crashes on the file; `check` reports such files).
    PyTorch,
}

/// How [`write_flatbuffer`] writes.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// How classes that share a qualified name are named ([`NameMode::Unique`] by default).
    pub names: NameMode,
}

/// Union tags of `IValueUnion` (spec §2).
mod tag {
    pub const INT: u8 = 1;
    pub const BOOL: u8 = 2;
    pub const DOUBLE: u8 = 3;
    pub const COMPLEX: u8 = 4;
    pub const TENSOR: u8 = 5;
    pub const STRING: u8 = 6;
    pub const LIST: u8 = 7;
    pub const TUPLE: u8 = 8;
    pub const DICT: u8 = 9;
    pub const OBJECT: u8 = 10;
    pub const INT_LIST: u8 = 11;
    pub const DOUBLE_LIST: u8 = 12;
    pub const BOOL_LIST: u8 = 13;
    pub const DEVICE: u8 = 14;
    pub const ENUM: u8 = 15;
    pub const FUNCTION: u8 = 16;
}

fn unsupported(what: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Format(FormatError::new(
        rules::FLATBUFFER_UNREPRESENTABLE,
        what,
        None,
        message,
    ))
}

/// The key of PyTorch's ivalue cache (an `unordered_map` over `IValue::hash` and
/// `operator==`): equal ints, bools, doubles (so `-0.0` joins `0.0`, NaN joins nothing),
/// strings, devices and tuples of such share one entry. A tensor hashes by identity; on
/// its own it only compares equal to itself when it has one element (otherwise
/// `bool(a == a)` throws and PyTorch stores it again), inside a tuple identity suffices.
/// Lists, dicts, objects, enums and complex numbers are never cached.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum CacheKey {
    None,
    Int(i64),
    Bool(bool),
    Double(u64),
    Str(Bytes),
    Device(String),
    Tensor(usize),
    Tuple(Vec<CacheKey>),
}

fn cache_key(v: &IValue, in_tuple: bool) -> Option<CacheKey> {
    Some(match v {
        IValue::None => CacheKey::None,
        IValue::Int(i) => CacheKey::Int(*i),
        IValue::Bool(b) => CacheKey::Bool(*b),
        IValue::Double(d) if d.is_nan() => return None,
        IValue::Double(d) => CacheKey::Double(if *d == 0.0 { 0 } else { d.to_bits() }),
        IValue::String(s) => CacheKey::Str(s.0.clone()),
        IValue::Device(d) => CacheKey::Device(d.to_string()),
        IValue::Tensor(t) => {
            if !in_tuple && !scalar_equals_itself(t) {
                return None;
            }
            CacheKey::Tensor(Arc::as_ptr(t) as usize)
        }
        IValue::Tuple(t) => CacheKey::Tuple(
            t.items
                .iter()
                .map(|i| cache_key(i, true))
                .collect::<Option<Vec<_>>>()?,
        ),
        _ => return None,
    })
}

/// Whether `bool(t == t)` is true in PyTorch: one element, not NaN, a plain CPU tensor.
fn scalar_equals_itself(t: &Tensor) -> bool {
    if t.numel() != 1 || t.quantization.is_some() || t.device().is_meta() {
        return false;
    }
    let esize = t.dtype().element_size() as usize;
    let start = t.storage_offset.max(0) as usize * esize;
    let Some(bytes) = t.storage.data.get(start..start + esize) else {
        return false;
    };
    use crate::model::ScalarType as S;
    match t.dtype() {
        S::Float32 => !f32::from_le_bytes(bytes.try_into().unwrap_or_default()).is_nan(),
        S::Float64 => !f64::from_le_bytes(bytes.try_into().unwrap_or_default()).is_nan(),
        S::Float16 | S::BFloat16 => {
            // NaN: all exponent bits set and a non-zero mantissa.
            let x = u16::from_le_bytes(bytes.try_into().unwrap_or_default());
            let (exp, man) = if t.dtype() == S::Float16 {
                (0x7c00, 0x03ff)
            } else {
                (0x7f80, 0x007f)
            };
            !(x & exp == exp && x & man != 0)
        }
        S::Complex32 | S::Complex64 | S::Complex128 => false,
        _ => true,
    }
}

/// The most values a flatbuffer is written with once shared children are unfolded:
/// each costs at least a 4-byte index, so far more would not fit in 2 GiB anyway.
const MAX_UNFOLDED_VALUES: u64 = 1 << 26;

/// How many values `v` is written as, with every use of a shared container counted
/// (saturating; `memo` keeps each container's count, so this is linear in the DAG).
fn unfolded_size(v: &IValue, memo: &mut HashMap<usize, u64>, depth: u32) -> u64 {
    if depth > 1100 {
        // Deeper than the writer goes (it refuses past 1000 levels).
        return 1;
    }
    let id = v.identity();
    if let Some(n) = id.and_then(|id| memo.get(&id)) {
        return *n;
    }
    if let Some(id) = id {
        // Reached again while being counted (a cycle): counted once.
        memo.insert(id, 1);
    }
    let mut n: u64 = 1;
    for c in v.children() {
        n = n.saturating_add(unfolded_size(c, memo, depth + 1));
    }
    if let Some(id) = id {
        memo.insert(id, n);
    }
    n
}

struct Writer<'a> {
    b: Builder,
    m: &'a MobileModule,
    ivalues: Vec<Loc>,
    cache: HashMap<CacheKey, u32>,
    /// Strings already stored, by the address and length of their bytes: a string
    /// referenced many times is hashed into `cache` once, not once per reference.
    stored_strings: HashMap<(usize, usize), u32>,
    /// Functions and classes by qualified name (one map, as in PyTorch).
    by_name: HashMap<String, u32>,
    object_types: Vec<Loc>,
    storages: Vec<Arc<Storage>>,
    storage_index: HashMap<usize, u32>,
    /// Class name in the file → (kind, attribute names), from the object graph.
    classes: HashMap<String, (ObjectKind, Vec<String>)>,
    hints: HashMap<&'a str, &'a ObjectTypeInfo>,
    renames: Renames,
    mode: NameMode,
}

impl MobileModule {
    /// A mobile module for `module` with these root methods (none: the module is still
    /// loadable by `torch.jit.load`, which compiles the code, but not runnable by the lite
    /// interpreter). Versions are PyTorch 2.15's for plain code: bytecode 9, operators 1.
    pub fn new(module: ScriptModule, methods: Vec<Arc<BytecodeFunction>>) -> MobileModule {
        MobileModule {
            module,
            bytecode_version: 9,
            operator_version: 1,
            functions: methods.clone(),
            methods,
            object_types: Vec::new(),
            extra_files: Vec::new(),
            jit_sources: Vec::new(),
            mobile_ivalue_size: 0,
            storage_count: 0,
        }
    }
}

/// Writes `m` as a mobile flatbuffer. Extra files and jit sources are written in the
/// order given (`m.extra_files`, the module's code files).
pub fn write_flatbuffer(m: &MobileModule, options: &WriteOptions) -> Result<Vec<u8>, Error> {
    let mut w = Writer {
        b: Builder::new(),
        m,
        ivalues: Vec::new(),
        cache: HashMap::new(),
        stored_strings: HashMap::new(),
        by_name: HashMap::new(),
        object_types: Vec::new(),
        storages: Vec::new(),
        storage_index: HashMap::new(),
        classes: HashMap::new(),
        hints: m
            .object_types
            .iter()
            .map(|t| (t.type_name.as_str(), t))
            .collect(),
        renames: Renames::new(),
        mode: options.names,
    };
    let jit_sources = w.plan_names()?;
    w.check_size()?;

    // [0] = NONE.
    w.b.start_table();
    let none = w.b.end_table();
    w.ivalues.push(none);

    let mut method_indexes = Vec::new();
    for f in &m.methods {
        method_indexes.push(w.store_function(f)?);
    }
    let methods = w.b.create_vector_u32(&method_indexes);
    let root = IValue::Object(m.module.root.clone());
    let state_obj = w.store_value(&root, 0)?;
    let extra_files = w.store_files(
        m.extra_files
            .iter()
            .map(|(n, c)| (n.as_bytes(), c.as_ref())),
    );
    let jit_sources = w.store_files(
        jit_sources
            .iter()
            .map(|(q, t)| (q.as_bytes(), t.as_bytes())),
    );
    let mobile_ivalue_size = w.ivalues.len() as u32;
    let mut jit_constants = Vec::new();
    for c in &m.module.constants {
        jit_constants.push(w.store_value(c, 0)?);
    }
    // Storage bytes last, each starting at a multiple of 32 (`ForceVectorAlignment`).
    let mut storage_tables = Vec::new();
    for s in std::mem::take(&mut w.storages) {
        let data: &[u8] = &s.data;
        w.b.force_vector_alignment(data.len(), 32);
        let v = w.b.create_vector_raw(data, data.len(), 1);
        w.b.start_table();
        w.b.add_offset(0, Some(v));
        storage_tables.push(w.b.end_table());
    }
    let storage_count = storage_tables.len();
    let storage_data = w.b.create_vector_offsets(&storage_tables);
    // `CreateModule(...)`'s vector arguments, right to left.
    let jit_constants = w.b.create_vector_u32(&jit_constants);
    let object_types =
        w.b.create_vector_offsets(&std::mem::take(&mut w.object_types));
    let ivalues = w.b.create_vector_offsets(&std::mem::take(&mut w.ivalues));
    let b = &mut w.b;
    b.start_table();
    b.add_u32(11, mobile_ivalue_size, 0);
    b.add_u32(10, m.operator_version, 0);
    b.add_offset(9, Some(jit_constants));
    b.add_offset(8, Some(jit_sources));
    b.add_offset(7, Some(object_types));
    b.add_offset(6, Some(storage_data));
    b.add_i32(5, storage_count as i32, 0);
    b.add_offset(4, Some(ivalues));
    b.add_u32(3, state_obj, 0);
    b.add_offset(2, Some(methods));
    b.add_offset(1, Some(extra_files));
    b.add_u32(0, m.bytecode_version.max(9), 0);
    let module = b.end_table();
    Ok(w.b.finish(module, IDENTIFIER))
}

impl<'a> Writer<'a> {
    /// Walks the object graph once: records each class's kind and attribute names,
    /// decides the file name of every class key, and returns the jit sources.
    fn plan_names(&mut self) -> Result<Vec<(String, String)>, Error> {
        let mut order: Vec<QualifiedName> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![IValue::Object(self.m.module.root.clone())];
        stack.extend(self.m.module.constants.iter().cloned());
        let mut visited = std::collections::HashSet::new();
        while let Some(v) = stack.pop() {
            if let Some(id) = v.identity()
                && !visited.insert(id)
            {
                continue;
            }
            match &v {
                IValue::Object(o) if seen.insert(o.class.clone()) => order.push(o.class.clone()),
                IValue::Enum(e) if seen.insert(e.enum_type.clone()) => {
                    order.push(e.enum_type.clone())
                }
                _ => {}
            }
            let mut children: Vec<IValue> = v.children().into_iter().cloned().collect();
            children.reverse();
            stack.extend(children);
        }
        let keyed = order.iter().any(|n| n.as_str().contains(KEY_SEPARATOR))
            || self
                .m
                .module
                .cu
                .definitions()
                .any(|d| d.name().as_str().contains(KEY_SEPARATOR));
        let uniquer = RefCell::new(NameUniquer::new());
        if keyed {
            for key in &order {
                let name = match self.mode {
                    NameMode::Unique => {
                        crate::zip_archive::save::archive_name(&self.m.module.cu, &uniquer, key)
                    }
                    NameMode::PyTorch => {
                        // Code is still printed with unique names (PyTorch's code
                        // printer uniques them); only the object types keep raw names.
                        crate::zip_archive::save::archive_name(&self.m.module.cu, &uniquer, key);
                        original_name(key)
                    }
                };
                self.renames.insert(key.clone(), name);
            }
        }
        if crate::zip_archive::save::is_verbatim(&self.m.module) {
            return Ok(self
                .m
                .module
                .cu
                .files
                .iter()
                .map(|f| (f.qualifier.clone(), f.text.clone()))
                .collect());
        }
        Ok(
            crate::zip_archive::save::print_code(&self.m.module.cu, &uniquer, order)
                .into_iter()
                .map(|(q, t, _)| (q, t))
                .collect(),
        )
    }

    /// Flatbuffers address at most 2 GiB; PyTorch cannot write larger models either.
    fn check_size(&self) -> Result<(), Error> {
        let mut total: u64 = 0;
        for (_, c) in &self.m.extra_files {
            total += c.len() as u64;
        }
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![IValue::Object(self.m.module.root.clone())];
        stack.extend(self.m.module.constants.iter().cloned());
        while let Some(v) = stack.pop() {
            if let Some(id) = v.identity()
                && !seen.insert(id)
            {
                continue;
            }
            if let IValue::Tensor(t) = &v
                && seen.insert(Arc::as_ptr(&t.storage) as usize)
            {
                total += t.storage.data.len() as u64 + 32;
            }
            stack.extend(v.children().into_iter().cloned());
        }
        // The writer stores a list, dict or object again at every use (as PyTorch's
        // does: they are not hashable there), so values that share children are written
        // as the tree they unfold to, which can be exponentially larger than the file.
        let mut memo = HashMap::new();
        let unfolded = std::iter::once(IValue::Object(self.m.module.root.clone()))
            .chain(self.m.module.constants.iter().cloned())
            .fold(0u64, |n, v| {
                n.saturating_add(unfolded_size(&v, &mut memo, 0))
            });
        if unfolded > MAX_UNFOLDED_VALUES {
            return Err(unsupported(
                "Module",
                format!(
                    "its values unfold to {unfolded} stored values (lists, dicts and objects shared by many parents are written once per use); a flatbuffer holds at most {MAX_UNFOLDED_VALUES}: save it as a zip archive"
                ),
            ));
        }
        if total >= (1 << 31) - (1 << 20) {
            return Err(unsupported(
                "Module",
                format!(
                    "{total} bytes of tensor data and extra files do not fit in a flatbuffer (limit 2 GiB); save it as a zip archive"
                ),
            ));
        }
        Ok(())
    }

    fn name_of(&self, n: &QualifiedName) -> QualifiedName {
        self.renames.get(n).cloned().unwrap_or_else(|| n.clone())
    }

    fn type_of(&self, t: &TypeExpr) -> TypeExpr {
        if self.renames.is_empty() {
            t.clone()
        } else {
            rename_type(t, &self.renames)
        }
    }

    fn push_ivalue(&mut self, tag: u8, value: Loc) -> u32 {
        self.b.start_table();
        self.b.add_offset(1, Some(value));
        self.b.add_u8(0, tag, 0);
        let loc = self.b.end_table();
        self.ivalues.push(loc);
        (self.ivalues.len() - 1) as u32
    }

    fn store_files<'f>(&mut self, files: impl Iterator<Item = (&'f [u8], &'f [u8])>) -> Loc {
        let mut tables = Vec::new();
        for (name, content) in files {
            let content = self.b.create_string(content);
            let name = self.b.create_shared_string(name);
            self.b.start_table();
            self.b.add_offset(1, Some(content));
            self.b.add_offset(0, Some(name));
            tables.push(self.b.end_table());
        }
        self.b.create_vector_offsets(&tables)
    }

    fn store_function(&mut self, f: &BytecodeFunction) -> Result<u32, Error> {
        let qn = f.qualified_name.as_str();
        if let Some(&i) = self.by_name.get(qn) {
            return Ok(i);
        }
        let mut operators = Vec::new();
        for op in &f.operators {
            let overload = self.b.create_shared_string(op.overload_name.as_bytes());
            let name = self.b.create_shared_string(op.name.as_bytes());
            self.b.start_table();
            self.b.add_i32(2, op.num_args.unwrap_or(-1), -1);
            self.b.add_offset(1, Some(overload));
            self.b.add_offset(0, Some(name));
            operators.push(self.b.end_table());
        }
        let mut constants = Vec::new();
        for c in &f.constants {
            constants.push(self.store_value(c, 0)?);
        }
        let mut types = Vec::new();
        for t in &f.type_annotations {
            types.push(self.b.create_shared_string(t.as_bytes()));
        }
        let mut schema = None;
        let mut class_index = 0;
        if let Some(s) = &f.schema {
            let arguments = self.store_args(&s.arguments)?;
            let returns = self.store_args(&s.returns)?;
            let returns = self.b.create_vector_offsets(&returns);
            let arguments = self.b.create_vector_offsets(&arguments);
            self.b.start_table();
            self.b.add_offset(1, Some(returns));
            self.b.add_offset(0, Some(arguments));
            schema = Some(self.b.end_table());
            let self_type = s.arguments.first().ok_or_else(|| {
                unsupported(
                    format!("function {qn}"),
                    "a method schema needs `self` as its first argument",
                )
            })?;
            class_index = self.store_class(&QualifiedName::new(self_type.type_str.clone()))?;
        }
        let handles = self.b.create_vector_i64(&f.debug_handles);
        self.b.start_table();
        self.b.add_offset(0, Some(handles));
        let debug_info = self.b.end_table();
        let qn_loc = self.b.create_string(qn.as_bytes());
        let code: Vec<u8> = f
            .instructions
            .iter()
            .flat_map(|i| {
                let mut e = [0u8; 8];
                e[0] = i.op as u8;
                e[2..4].copy_from_slice(&i.n.to_le_bytes());
                e[4..8].copy_from_slice(&i.x.to_le_bytes());
                e
            })
            .collect();
        let instructions = self.b.create_vector_raw(&code, f.instructions.len(), 4);
        let operators = self.b.create_vector_offsets(&operators);
        let constants = self.b.create_vector_u32(&constants);
        let types = self.b.create_vector_offsets(&types);
        let b = &mut self.b;
        b.start_table();
        b.add_u32(8, class_index, 0);
        b.add_offset(7, Some(debug_info));
        b.add_offset(6, schema);
        b.add_i32(5, f.register_size, 0);
        b.add_offset(4, Some(types));
        b.add_offset(3, Some(constants));
        b.add_offset(2, Some(operators));
        b.add_offset(1, Some(instructions));
        b.add_offset(0, Some(qn_loc));
        let table = b.end_table();
        let index = self.push_ivalue(tag::FUNCTION, table);
        self.by_name.insert(qn.to_string(), index);
        Ok(index)
    }

    fn store_args(&mut self, args: &[Arg]) -> Result<Vec<Loc>, Error> {
        let mut out = Vec::new();
        for a in args {
            let default = match &a.default_value {
                Some(v) => self.store_value(v, 0)?,
                None => 0,
            };
            let ty = self.b.create_shared_string(a.type_str.as_bytes());
            let name = self.b.create_shared_string(a.name.as_bytes());
            self.b.start_table();
            self.b.add_u32(2, default, 0);
            self.b.add_offset(1, Some(ty));
            self.b.add_offset(0, Some(name));
            out.push(self.b.end_table());
        }
        Ok(out)
    }

    /// The kind and attribute names of the class written as `name`.
    fn class_info(&self, name: &str) -> Result<(ObjectKind, Vec<String>), Error> {
        if let Some(info) = self.classes.get(name) {
            return Ok(info.clone());
        }
        if let Some(t) = self.hints.get(name) {
            return Ok((t.kind, t.attr_names.clone()));
        }
        if crate::model::torchbind::is_torchbind(name) {
            return Ok((ObjectKind::CustomClass, Vec::new()));
        }
        if let Some(c) = self.m.module.cu.class(&QualifiedName::new(name)) {
            let kind = if c.has_setstate() {
                ObjectKind::ClassWithSetstate
            } else {
                ObjectKind::ClassWithField
            };
            return Ok((kind, c.attributes.iter().map(|a| a.name.clone()).collect()));
        }
        Err(unsupported(
            format!("class {name}"),
            "no object, object type or declaration describes this class",
        ))
    }

    /// `storeClassTypeAndGetIndex`: one ObjectType per name, in first-use order.
    fn store_class(&mut self, name: &QualifiedName) -> Result<u32, Error> {
        if let Some(&i) = self.by_name.get(name.as_str()) {
            return Ok(i);
        }
        let (kind, attrs) = self.class_info(name.as_str())?;
        let mut attr_names = None;
        if kind == ObjectKind::ClassWithField || kind == ObjectKind::Unset {
            let names: Vec<Loc> = attrs
                .iter()
                .map(|a| self.b.create_shared_string(a.as_bytes()))
                .collect();
            attr_names = Some(self.b.create_vector_offsets(&names));
        }
        let type_name = self.b.create_string(name.as_str().as_bytes());
        let kind_number = match kind {
            ObjectKind::Unset | ObjectKind::ClassWithField => 1,
            ObjectKind::CustomClass => 2,
            ObjectKind::ClassWithSetstate => 3,
            ObjectKind::NonObj => 4,
        };
        self.b.start_table();
        self.b.add_offset(2, attr_names);
        self.b.add_offset(0, Some(type_name));
        self.b.add_u8(1, kind_number, 0);
        let t = self.b.end_table();
        self.object_types.push(t);
        let index = (self.object_types.len() - 1) as u32;
        self.by_name.insert(name.as_str().to_string(), index);
        Ok(index)
    }

    /// `storeIValueAndGetIndex`.
    fn store_value(&mut self, v: &IValue, depth: u32) -> Result<u32, Error> {
        if depth > 1000 {
            return Err(unsupported(
                "value",
                "values nested deeper than 1000 levels",
            ));
        }
        if let IValue::None = v {
            return Ok(0);
        }
        // Two strings with the same bytes at the same place are equal: same cache entry.
        let place = match v {
            IValue::String(s) => Some((s.0.as_ptr() as usize, s.0.len())),
            _ => None,
        };
        if let Some(p) = place
            && let Some(&i) = self.stored_strings.get(&p)
        {
            return Ok(i);
        }
        let key = cache_key(v, false);
        let index = match key.as_ref().and_then(|k| self.cache.get(k)) {
            Some(&i) => i,
            None => self.value_to_fb(v, depth)?,
        };
        if let Some(k) = key {
            self.cache.entry(k).or_insert(index);
        }
        if let Some(p) = place {
            self.stored_strings.insert(p, index);
        }
        Ok(index)
    }

    fn store_all(&mut self, items: &[IValue], depth: u32) -> Result<Vec<u32>, Error> {
        items
            .iter()
            .map(|i| self.store_value(i, depth + 1))
            .collect()
    }

    fn value_to_fb(&mut self, v: &IValue, depth: u32) -> Result<u32, Error> {
        let b = &mut self.b;
        Ok(match v {
            IValue::None => 0,
            IValue::Tensor(t) => {
                let t = self.tensor_to_fb(t)?;
                self.push_ivalue(tag::TENSOR, t)
            }
            IValue::Tuple(t) => {
                let items = self.store_all(&t.items, depth)?;
                let items = self.b.create_vector_u32(&items);
                self.b.start_table();
                self.b.add_offset(0, Some(items));
                let t = self.b.end_table();
                self.push_ivalue(tag::TUPLE, t)
            }
            IValue::Double(d) => {
                let s = b.create_struct(&d.to_le_bytes(), 8);
                self.push_ivalue(tag::DOUBLE, s)
            }
            IValue::Complex(re, im) => {
                let mut bytes = re.to_le_bytes().to_vec();
                bytes.extend(im.to_le_bytes());
                let s = b.create_struct(&bytes, 8);
                self.push_ivalue(tag::COMPLEX, s)
            }
            IValue::Int(i) => {
                let s = b.create_struct(&i.to_le_bytes(), 8);
                self.push_ivalue(tag::INT, s)
            }
            IValue::Bool(x) => {
                let s = b.create_struct(&[*x as u8], 1);
                self.push_ivalue(tag::BOOL, s)
            }
            IValue::String(s) => {
                let data = b.create_shared_string(s.as_bytes());
                b.start_table();
                b.add_offset(0, Some(data));
                let t = b.end_table();
                self.push_ivalue(tag::STRING, t)
            }
            IValue::Dict(d) => {
                let mut keys = Vec::new();
                let mut values = Vec::new();
                for (k, v) in &d.entries {
                    keys.push(self.store_value(k, depth + 1)?);
                    values.push(self.store_value(v, depth + 1)?);
                }
                let ann = format!(
                    "Dict[{}, {}]",
                    self.type_of(&d.key_type),
                    self.type_of(&d.value_type)
                );
                let ann = self.b.create_shared_string(ann.as_bytes());
                let values = self.b.create_vector_u32(&values);
                let keys = self.b.create_vector_u32(&keys);
                self.b.start_table();
                self.b.add_offset(2, Some(ann));
                self.b.add_offset(1, Some(values));
                self.b.add_offset(0, Some(keys));
                let t = self.b.end_table();
                self.push_ivalue(tag::DICT, t)
            }
            IValue::List(l) => match l.elem_type.to_string().as_str() {
                "int" => {
                    let items = list_items(&l.items, |v| match v {
                        IValue::Int(i) => Some(*i),
                        _ => None,
                    })?;
                    let v = self.b.create_vector_i64(&items);
                    self.push_table_with_vector(tag::INT_LIST, v)
                }
                "float" => {
                    let items = list_items(&l.items, |v| match v {
                        IValue::Double(d) => Some(*d),
                        _ => None,
                    })?;
                    let v = self.b.create_vector_f64(&items);
                    self.push_table_with_vector(tag::DOUBLE_LIST, v)
                }
                "bool" => {
                    let items = list_items(&l.items, |v| match v {
                        IValue::Bool(b) => Some(*b as u8),
                        _ => None,
                    })?;
                    let v = self.b.create_vector_raw(&items, items.len(), 1);
                    self.push_table_with_vector(tag::BOOL_LIST, v)
                }
                _ => {
                    let items = self.store_all(&l.items, depth)?;
                    let ann = format!("List[{}]", self.type_of(&l.elem_type));
                    let ann = self.b.create_shared_string(ann.as_bytes());
                    let items = self.b.create_vector_u32(&items);
                    self.b.start_table();
                    self.b.add_offset(1, Some(ann));
                    self.b.add_offset(0, Some(items));
                    let t = self.b.end_table();
                    self.push_ivalue(tag::LIST, t)
                }
            },
            IValue::Object(o) => {
                let t = self.object_to_fb(o, depth)?;
                self.push_ivalue(tag::OBJECT, t)
            }
            IValue::Device(d) => {
                let s = b.create_shared_string(d.to_string().as_bytes());
                b.start_table();
                b.add_offset(0, Some(s));
                let t = b.end_table();
                self.push_ivalue(tag::DEVICE, t)
            }
            IValue::Enum(e) => {
                let value = self.store_value(&e.value, depth + 1)?;
                let name = self.name_of(&e.enum_type);
                let name = self.b.create_shared_string(name.as_str().as_bytes());
                self.b.start_table();
                self.b.add_u32(1, value, 0);
                self.b.add_offset(0, Some(name));
                let t = self.b.end_table();
                self.push_ivalue(tag::ENUM, t)
            }
        })
    }

    fn push_table_with_vector(&mut self, tag: u8, v: Loc) -> u32 {
        self.b.start_table();
        self.b.add_offset(0, Some(v));
        let t = self.b.end_table();
        self.push_ivalue(tag, t)
    }

    fn object_to_fb(&mut self, o: &Object, depth: u32) -> Result<Loc, Error> {
        let name = self.name_of(&o.class);
        // The object type is keyed by the name written: under NameMode::PyTorch two
        // distinct classes sharing a name meet here, and the first one's layout wins.
        let file_name = name.as_str().to_string();
        let (mut attrs, mut state, mut setstate) = (None, 0, 0);
        let own_info = match &o.state {
            ObjectState::SetState(s) => {
                state = self.store_value(s, depth + 1)?;
                setstate = self
                    .by_name
                    .get(&format!("{file_name}.__setstate__"))
                    .copied()
                    .unwrap_or(0);
                let torchbind = crate::model::torchbind::is_torchbind_name(&o.class);
                let kind = match self.hints.get(file_name.as_str()) {
                    Some(t) if t.kind == ObjectKind::CustomClass => ObjectKind::CustomClass,
                    _ if torchbind => ObjectKind::CustomClass,
                    _ => ObjectKind::ClassWithSetstate,
                };
                (kind, Vec::new())
            }
            ObjectState::Attributes(a) => {
                let values: Vec<IValue> = a.iter().map(|(_, v)| v.clone()).collect();
                let indexes = self.store_all(&values, depth)?;
                attrs = Some(self.b.create_vector_u32(&indexes));
                (
                    ObjectKind::ClassWithField,
                    a.iter().map(|(n, _)| n.to_string_lossy()).collect(),
                )
            }
        };
        self.classes.entry(file_name).or_insert(own_info);
        let type_index = self.store_class(&name)?;
        let b = &mut self.b;
        b.start_table();
        b.add_u32(3, setstate, 0);
        b.add_offset(2, attrs);
        b.add_u32(1, state, 0);
        b.add_u32(0, type_index, 0);
        Ok(b.end_table())
    }

    fn tensor_to_fb(&mut self, t: &Arc<Tensor>) -> Result<Loc, Error> {
        if let Some(sparse) = &t.sparse {
            return Err(unsupported(
                "tensor",
                format!(
                    "{} tensors cannot be written as a flatbuffer (PyTorch cannot either: \"Cannot access storage of SparseTensorImpl\")",
                    sparse.layout.name()
                ),
            ));
        }
        if t.device().is_meta() {
            return Err(unsupported(
                "tensor",
                "meta tensors have no data and cannot be written as a flatbuffer (PyTorch cannot either)",
            ));
        }
        let mut qschema = None;
        if let Some(q) = &t.quantization {
            let (scheme, scale, zero_point, scales, zero_points, axis) = match q {
                Quantization::PerTensor {
                    scheme: scheme @ QScheme::PerTensorAffine,
                    scale,
                    zero_point,
                } => (*scheme, *scale, *zero_point, None, None, 0),
                Quantization::PerChannel {
                    scheme:
                        scheme @ (QScheme::PerChannelAffine | QScheme::PerChannelAffineFloatQparams),
                    scales,
                    zero_points,
                    axis,
                } => {
                    let s = self.tensor_to_fb(scales)?;
                    let z = self.tensor_to_fb(zero_points)?;
                    (*scheme, 0.0, 0, Some(s), Some(z), *axis)
                }
                Quantization::PerTensor { scheme, .. }
                | Quantization::PerChannel { scheme, .. } => {
                    return Err(unsupported(
                        "tensor",
                        format!(
                            "quantization scheme {} cannot be written as a flatbuffer (PyTorch refuses it too)",
                            scheme.name()
                        ),
                    ));
                }
            };
            let zero_point = i32::try_from(zero_point)
                .map_err(|_| unsupported("tensor", "zero point does not fit in 32 bits"))?;
            let axis = i32::try_from(axis)
                .map_err(|_| unsupported("tensor", "axis does not fit in 32 bits"))?;
            let b = &mut self.b;
            b.start_table();
            b.add_f64(1, scale, 0.0);
            b.add_i32(5, axis, 0);
            b.add_offset(4, zero_points);
            b.add_offset(3, scales);
            b.add_i32(2, zero_point, 0);
            b.add_scalar(0, [scheme as u8], [0]);
            qschema = Some(b.end_table());
        }
        // One storage per block of bytes, whatever dtype its tensors view it as: a
        // flatbuffer storage is untyped (PyTorch keys it by the storage itself), so the
        // reader's per-dtype storages of one `storage_data` entry share their bytes.
        let key = if t.storage.data.is_empty() {
            Arc::as_ptr(&t.storage) as usize
        } else {
            t.storage.data.as_ptr() as usize
        };
        let storage_index = match self.storage_index.get(&key) {
            Some(&i) => i,
            None => {
                let i = self.storages.len() as u32;
                self.storages.push(t.storage.clone());
                self.storage_index.insert(key, i);
                i
            }
        };
        let narrow = |v: i64, what: &str| {
            i32::try_from(v).map_err(|_| {
                unsupported(
                    "tensor",
                    format!("{what} {v} does not fit the flatbuffer's 32-bit fields"),
                )
            })
        };
        let sizes = t
            .sizes
            .iter()
            .map(|&s| narrow(s, "size"))
            .collect::<Result<Vec<_>, _>>()?;
        let strides = t
            .strides
            .iter()
            .map(|&s| narrow(s, "stride"))
            .collect::<Result<Vec<_>, _>>()?;
        let offset = narrow(t.storage_offset, "storage offset")?;
        let sizes = self.b.create_vector_i32(&sizes);
        let strides = self.b.create_vector_i32(&strides);
        let b = &mut self.b;
        b.start_table();
        b.add_offset(6, qschema);
        b.add_offset(4, Some(strides));
        b.add_offset(3, Some(sizes));
        b.add_i32(2, offset, 0);
        b.add_u32(0, storage_index, 0);
        b.add_u8(5, t.requires_grad as u8, 0);
        b.add_scalar(1, [t.dtype().number() as u8], [0]);
        Ok(b.end_table())
    }
}

fn list_items<T>(items: &[IValue], f: impl Fn(&IValue) -> Option<T>) -> Result<Vec<T>, Error> {
    items
        .iter()
        .map(|v| {
            f(v).ok_or_else(|| {
                unsupported(
                    "list",
                    format!("a typed list holds a {} element", v.kind_name()),
                )
            })
        })
        .collect()
}

//! The writer: PyTorch's dialect and memoization policy (`spec/pickle.md` §2–4), so that
//! re-saving a loaded archive reproduces PyTorch's bytes.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::opcodes as op;
use crate::model::{
    Dict, IValue, List, Object, ObjectState, QualifiedName, Quantization, Sparse, Storage, Tensor,
    Tuple, TypeExpr,
};

/// Strings at least this long are kept as shared chunks instead of being copied into the
/// output buffer, so a multi-GiB string attribute is streamed, not duplicated.
const SHARED_CHUNK_MIN: usize = 1 << 20;

/// Which heap values get a trailing BINPUT. PyTorch memoizes a tensor, list, dict, tuple
/// or object only when something else holds a reference to it at save time, which depends
/// on the saving process; these two policies reproduce the two situations the spec
/// verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemoPolicy {
    /// `torch.jit.load` then `torch.jit.save` in a fresh process: the root object, every
    /// module object, and anything reached more than once.
    Loaded,
    /// A module just produced by `torch.jit.script` from Python: as `Loaded`, plus every
    /// tensor (the Python `nn.Module` still references its parameters and buffers).
    Scripted,
    /// Exactly the values that were memoized in the pickle they were read from
    /// ([`crate::pickle::Unpickled::memoized`]); reproduces any writer's decisions.
    Recorded(Arc<HashSet<usize>>),
}

/// The pickle bytes as a list of chunks (large strings are shared, not copied).
#[derive(Clone, Debug, Default)]
pub struct PickleBytes {
    /// The chunks, in order; their concatenation is the pickle.
    pub chunks: Vec<Bytes>,
}

impl PickleBytes {
    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.chunks.iter().map(|c| c.len() as u64).sum()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Concatenates the chunks (copies; fine for anything but huge strings).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len() as usize);
        for c in &self.chunks {
            v.extend_from_slice(c);
        }
        v
    }

    /// A reader over the chunks, for streaming into a zip record.
    pub fn reader(&self) -> impl std::io::Read + '_ {
        ChunkReader {
            chunks: &self.chunks,
            index: 0,
            pos: 0,
        }
    }
}

struct ChunkReader<'a> {
    chunks: &'a [Bytes],
    index: usize,
    pos: usize,
}

impl std::io::Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.index < self.chunks.len() {
            let c = &self.chunks[self.index];
            if self.pos < c.len() {
                let n = buf.len().min(c.len() - self.pos);
                buf[..n].copy_from_slice(&c[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            self.index += 1;
            self.pos = 0;
        }
        Ok(0)
    }
}

/// Maps an in-memory type name to the name written for this save (mangling).
pub type NameMap<'a> = &'a dyn Fn(&QualifiedName) -> QualifiedName;

/// Writes values in TorchScript's pickle dialect, with PyTorch's memo decisions, storage
/// keys and type tags.
pub struct Pickler<'a> {
    cur: Vec<u8>,
    chunks: Vec<Bytes>,
    next_memo: u32,
    strings: HashMap<Bytes, u32>,
    /// Strings of at least `SHARED_CHUNK_MIN` bytes, memoized without hashing their
    /// contents (a multi-GiB string would otherwise be hashed twice).
    long_strings: Vec<(Bytes, u32)>,
    globals: HashMap<String, u32>,
    devices: HashMap<String, u32>,
    storage_memo: HashMap<usize, u32>,
    /// Distinct storages in the order first met: their index is their key.
    storages: Vec<Arc<Storage>>,
    /// Heap values that get a trailing BINPUT, and their memo id once written.
    memoize: HashSet<usize>,
    written: HashMap<usize, u32>,
    is_module: &'a dyn Fn(&QualifiedName) -> bool,
    name_map: NameMap<'a>,
    /// Storage keys are `<index><suffix>` (`".storage"` in mobile constants).
    key_suffix: &'static str,
    /// Storages an earlier pickle of the same archive already named (by identity →
    /// index): `bytecode.pkl` refers to `constants.pkl`'s records instead of writing
    /// its own.
    known_storages: HashMap<usize, usize>,
    /// The same, by the address and length of their bytes.
    known_by_bytes: HashMap<(usize, usize), usize>,
    /// How many storages the earlier pickles named (new ones are numbered after them).
    known_count: usize,
}

impl<'a> Pickler<'a> {
    /// A pickler after `PROTO 2`; `is_module` says which classes are modules, `name_map`
    /// gives each class its name in this save.
    pub fn new(is_module: &'a dyn Fn(&QualifiedName) -> bool, name_map: NameMap<'a>) -> Self {
        let mut cur = Vec::with_capacity(4096);
        cur.extend_from_slice(&[op::PROTO, 2]);
        Pickler {
            cur,
            chunks: Vec::new(),
            next_memo: 0,
            strings: HashMap::default(),
            long_strings: Vec::new(),
            globals: HashMap::default(),
            devices: HashMap::default(),
            storage_memo: HashMap::default(),
            storages: Vec::new(),
            memoize: HashSet::default(),
            written: HashMap::default(),
            is_module,
            name_map,
            key_suffix: "",
            known_storages: HashMap::default(),
            known_by_bytes: HashMap::default(),
            known_count: 0,
        }
    }

    /// Shares the storage names of an earlier pickle of the archive (`storages`, in key
    /// order): PyTorch's storage context, which makes `bytecode.pkl` name the records
    /// `constants.pkl` wrote. [`finish`](Self::finish) returns only the new storages.
    pub fn with_storage_context(mut self, storages: &[Arc<Storage>]) -> Self {
        self.known_count = storages.len();
        self.known_storages = storages
            .iter()
            .enumerate()
            .map(|(i, s)| (Arc::as_ptr(s) as usize, i))
            .collect();
        self.known_by_bytes = storages
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.data.as_ptr() as usize, s.data.len()), i))
            .collect();
        self
    }

    /// Decides which heap values of `root` are memoized under `policy`.
    pub fn plan(&mut self, root: &IValue, policy: MemoPolicy) {
        if let MemoPolicy::Recorded(set) = &policy {
            self.memoize = set.as_ref().clone();
            return;
        }
        let mut count: HashMap<usize, u32> = HashMap::default();
        let mut stack = vec![root];
        if let Some(id) = root.identity() {
            self.memoize.insert(id);
        }
        while let Some(v) = stack.pop() {
            let Some(id) = v.identity() else { continue };
            let c = count.entry(id).or_insert(0);
            *c += 1;
            if *c > 1 {
                self.memoize.insert(id);
                continue;
            }
            match v {
                IValue::Object(o) if (self.is_module)(&o.class) => {
                    self.memoize.insert(id);
                }
                IValue::Tensor(_) if policy == MemoPolicy::Scripted => {
                    self.memoize.insert(id);
                }
                _ => {}
            }
            stack.extend(v.children());
        }
    }

    /// Excludes one value from memoization (the constants tuple, which PyTorch builds
    /// afresh and so never memoizes).
    pub fn unmemoize(&mut self, v: &IValue) {
        if let Some(id) = v.identity() {
            self.memoize.remove(&id);
        }
    }

    /// Storage keys get `suffix` after their index (`".storage"` for a mobile zip's
    /// constants).
    pub fn with_key_suffix(mut self, suffix: &'static str) -> Self {
        self.key_suffix = suffix;
        self
    }

    /// Writes `v` and STOP; returns the bytes and the storages in key order.
    pub fn finish(mut self, v: &IValue) -> (PickleBytes, Vec<Arc<Storage>>) {
        self.value(v);
        self.cur.push(op::STOP);
        let cur = std::mem::take(&mut self.cur);
        self.chunks.push(Bytes::from(cur));
        (
            PickleBytes {
                chunks: self.chunks,
            },
            self.storages,
        )
    }

    fn put(&mut self) -> u32 {
        let id = self.next_memo;
        self.next_memo += 1;
        if id < 256 {
            self.cur.extend_from_slice(&[op::BINPUT, id as u8]);
        } else {
            self.cur.push(op::LONG_BINPUT);
            self.cur.extend_from_slice(&id.to_le_bytes());
        }
        id
    }

    fn get(&mut self, id: u32) {
        if id < 256 {
            self.cur.extend_from_slice(&[op::BINGET, id as u8]);
        } else {
            self.cur.push(op::LONG_BINGET);
            self.cur.extend_from_slice(&id.to_le_bytes());
        }
    }

    fn int(&mut self, v: i64) {
        if (0..=0xff).contains(&v) {
            self.cur.extend_from_slice(&[op::BININT1, v as u8]);
        } else if (0x100..=0xffff).contains(&v) {
            self.cur.push(op::BININT2);
            self.cur.extend_from_slice(&(v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.cur.push(op::BININT);
            self.cur.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            // PyTorch always writes LONG1 with 8 bytes, never the minimal length.
            self.cur.extend_from_slice(&[op::LONG1, 8]);
            self.cur.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn float(&mut self, v: f64) {
        self.cur.push(op::BINFLOAT);
        self.cur.extend_from_slice(&v.to_be_bytes());
    }

    /// Writes `s` as `BINUNICODE` (`BINUNICODE8` past 4 GiB) and memoizes it, or a `BINGET`
    /// of the same string written before.
    pub fn string(&mut self, s: &Bytes) {
        let long = s.len() >= SHARED_CHUNK_MIN;
        let known = if long {
            // Same length first; equal contents then (memcmp, usually the same buffer).
            self.long_strings
                .iter()
                .find(|(b, _)| b.len() == s.len() && (b.as_ptr() == s.as_ptr() || b == s))
                .map(|&(_, id)| id)
        } else {
            self.strings.get(s).copied()
        };
        if let Some(id) = known {
            self.get(id);
            return;
        }
        if s.len() as u64 > u32::MAX as u64 {
            self.cur.push(op::BINUNICODE8);
            self.cur.extend_from_slice(&(s.len() as u64).to_le_bytes());
        } else {
            self.cur.push(op::BINUNICODE);
            self.cur.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        if s.len() >= SHARED_CHUNK_MIN {
            let cur = std::mem::replace(&mut self.cur, Vec::with_capacity(4096));
            self.chunks.push(Bytes::from(cur));
            self.chunks.push(s.clone());
        } else {
            self.cur.extend_from_slice(s);
        }
        let id = self.put();
        if long {
            self.long_strings.push((s.clone(), id));
        } else {
            self.strings.insert(s.clone(), id);
        }
    }

    fn str(&mut self, s: &str) {
        self.string(&Bytes::copy_from_slice(s.as_bytes()));
    }

    fn global(&mut self, module: &str, name: &str) {
        let key = format!("{module}\n{name}\n");
        if let Some(&id) = self.globals.get(&key) {
            self.get(id);
            return;
        }
        self.cur.push(op::GLOBAL);
        self.cur.extend_from_slice(key.as_bytes());
        let id = self.put();
        self.globals.insert(key, id);
    }

    fn class_global(&mut self, name: &QualifiedName) {
        let out = (self.name_map)(name);
        self.global(out.qualifier(), out.name());
    }

    fn tuple_items(&mut self, items: &[IValue]) {
        match items.len() {
            0 => self.cur.push(op::EMPTY_TUPLE),
            1..=3 => {
                for i in items {
                    self.value(i);
                }
                self.cur.push(op::TUPLE1 + items.len() as u8 - 1);
            }
            _ => {
                self.cur.push(op::MARK);
                for i in items {
                    self.value(i);
                }
                self.cur.push(op::TUPLE);
            }
        }
    }

    /// Writes a heap value unless already written (then BINGET); memoizes per plan.
    fn heap(&mut self, v: &IValue, body: impl FnOnce(&mut Self)) {
        let id = v.identity().expect("heap value");
        if let Some(&m) = self.written.get(&id) {
            self.get(m);
            return;
        }
        body(self);
        if self.memoize.contains(&id) {
            let m = self.put();
            self.written.insert(id, m);
        }
    }

    /// Writes `v` (without `STOP`), memoizing and sharing as the policy says.
    pub fn value(&mut self, v: &IValue) {
        match v {
            IValue::None => self.cur.push(op::NONE),
            IValue::Bool(b) => self.cur.push(if *b { op::NEWTRUE } else { op::NEWFALSE }),
            IValue::Int(i) => self.int(*i),
            IValue::Double(f) => self.float(*f),
            IValue::Complex(re, im) => {
                self.global("builtins", "complex");
                self.float(*re);
                self.float(*im);
                self.cur.extend_from_slice(&[op::TUPLE2, op::REDUCE]);
            }
            IValue::String(s) => self.string(&s.0),
            IValue::Device(d) => {
                let text = d.to_string();
                if let Some(&id) = self.devices.get(&text) {
                    self.get(id);
                    return;
                }
                self.global("torch", "device");
                self.str(&text);
                self.cur.extend_from_slice(&[op::TUPLE1, op::REDUCE]);
                let id = self.put();
                self.devices.insert(text, id);
            }
            IValue::Tuple(t) => self.heap(v, |p| p.tuple(t)),
            IValue::List(l) => self.heap(v, |p| p.list(l)),
            IValue::Dict(d) => self.heap(v, |p| p.dict(d)),
            IValue::Object(o) => self.heap(v, |p| p.object(o)),
            IValue::Tensor(t) => self.heap(v, |p| p.tensor(t)),
            IValue::Enum(e) => self.heap(v, |p| {
                p.class_global(&e.enum_type);
                p.value(&e.value);
                p.cur.push(op::REDUCE);
            }),
        }
    }

    fn tuple(&mut self, t: &Tuple) {
        self.tuple_items(&t.items);
    }

    fn list(&mut self, l: &List) {
        let builder = match &l.elem_type {
            TypeExpr::Name(n) if n == "int" => Some("build_intlist"),
            TypeExpr::Name(n) if n == "float" => Some("build_doublelist"),
            TypeExpr::Name(n) if n == "bool" => Some("build_boollist"),
            TypeExpr::Name(n) if n == "Tensor" => Some("build_tensorlist"),
            _ => None,
        };
        match builder {
            Some(b) => {
                self.global("torch.jit._pickle", b);
                self.cur
                    .extend_from_slice(&[op::MARK, op::EMPTY_LIST, op::MARK]);
                for i in &l.items {
                    self.value(i);
                }
                self.cur
                    .extend_from_slice(&[op::APPENDS, op::TUPLE, op::REDUCE]);
            }
            None => {
                self.global("torch.jit._pickle", "restore_type_tag");
                self.cur.extend_from_slice(&[op::EMPTY_LIST, op::MARK]);
                for i in &l.items {
                    self.value(i);
                }
                self.cur.push(op::APPENDS);
                let ty = self.type_string(&TypeExpr::list(l.elem_type.clone()));
                self.str(&ty);
                self.cur.extend_from_slice(&[op::TUPLE2, op::REDUCE]);
            }
        }
    }

    fn dict(&mut self, d: &Dict) {
        self.global("torch.jit._pickle", "restore_type_tag");
        self.dict_body(&d.entries);
        let ty = self.type_string(&TypeExpr::dict(d.key_type.clone(), d.value_type.clone()));
        self.str(&ty);
        self.cur.extend_from_slice(&[op::TUPLE2, op::REDUCE]);
    }

    fn dict_body(&mut self, entries: &[(IValue, IValue)]) {
        self.cur.extend_from_slice(&[op::EMPTY_DICT, op::MARK]);
        for (k, v) in entries {
            self.value(k);
            self.value(v);
        }
        self.cur.push(op::SETITEMS);
    }

    /// Type tags name classes by their names for this save.
    fn type_string(&self, t: &TypeExpr) -> String {
        map_type_names(t, self.name_map).to_string()
    }

    fn object(&mut self, o: &Object) {
        self.class_global(&o.class);
        self.cur.extend_from_slice(&[op::EMPTY_TUPLE, op::NEWOBJ]);
        match &o.state {
            ObjectState::Attributes(attrs) => {
                self.cur.extend_from_slice(&[op::EMPTY_DICT, op::MARK]);
                for (name, value) in attrs {
                    self.string(&name.0);
                    self.value(value);
                }
                self.cur.push(op::SETITEMS);
            }
            ObjectState::SetState(s) => self.value(s),
        }
        self.cur.push(op::BUILD);
    }

    fn storage(&mut self, s: &Arc<Storage>) {
        let id = Arc::as_ptr(s) as usize;
        if let Some(&m) = self.storage_memo.get(&id) {
            self.get(m);
            return;
        }
        let known = self.known_storages.get(&id).or_else(|| {
            // The same record read by two pickles: two storages over the same bytes.
            let bytes = (s.data.as_ptr() as usize, s.data.len());
            (bytes.1 > 0)
                .then(|| self.known_by_bytes.get(&bytes))
                .flatten()
        });
        let index = match known.copied() {
            Some(i) => i,
            None => {
                self.storages.push(s.clone());
                self.known_count + self.storages.len() - 1
            }
        };
        let key = format!("{index}{}", self.key_suffix);
        self.cur.push(op::MARK);
        self.str("storage");
        self.global("torch", s.dtype.storage_name());
        self.str(&key);
        self.str(&s.device.to_string());
        self.int(s.numel as i64);
        self.cur.extend_from_slice(&[op::TUPLE, op::BINPERSID]);
        let m = self.put();
        self.storage_memo.insert(id, m);
    }

    fn int_tuple(&mut self, v: &[i64]) {
        self.cur.push(op::MARK);
        for &i in v {
            self.int(i);
        }
        self.cur.push(op::TUPLE);
    }

    /// `_rebuild_sparse_tensor(layout, sizes, requires_grad, component..., OrderedDict())`;
    /// the components are written as plain tensors, never memoized (PyTorch's pickler
    /// pushes them as tensors, not as values).
    fn sparse_tensor(&mut self, t: &Tensor, sparse: &Sparse) {
        self.global("torch._utils", "_rebuild_sparse_tensor");
        self.cur.push(op::MARK);
        self.int(sparse.layout as i64);
        self.int_tuple(&t.sizes);
        self.cur.push(if t.requires_grad {
            op::NEWTRUE
        } else {
            op::NEWFALSE
        });
        for c in &sparse.components {
            self.tensor(c);
        }
        self.global("collections", "OrderedDict");
        self.cur
            .extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE, op::TUPLE, op::REDUCE]);
    }

    fn tensor(&mut self, t: &Tensor) {
        if let Some(sparse) = &t.sparse {
            return self.sparse_tensor(t, sparse);
        }
        let quantized = t.quantization.is_some();
        self.global(
            "torch._utils",
            if quantized {
                "_rebuild_qtensor"
            } else {
                "_rebuild_tensor_v2"
            },
        );
        self.cur.push(op::MARK);
        self.storage(&t.storage);
        self.int(t.storage_offset);
        self.int_tuple(&t.sizes);
        self.int_tuple(&t.strides);
        if let Some(q) = &t.quantization {
            self.cur.push(op::MARK);
            match q {
                Quantization::PerTensor {
                    scheme,
                    scale,
                    zero_point,
                } => {
                    self.global("torch", scheme.name());
                    self.float(*scale);
                    self.int(*zero_point);
                }
                Quantization::PerChannel {
                    scheme,
                    scales,
                    zero_points,
                    axis,
                } => {
                    self.global("torch", scheme.name());
                    self.value(&IValue::Tensor(scales.clone()));
                    self.value(&IValue::Tensor(zero_points.clone()));
                    self.int(*axis);
                }
            }
            self.cur.push(op::TUPLE);
        }
        self.cur.push(if t.requires_grad {
            op::NEWTRUE
        } else {
            op::NEWFALSE
        });
        self.global("collections", "OrderedDict");
        self.cur.extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE]);
        if !quantized && (t.conj || t.neg) {
            self.global("torch.jit._pickle", "restore_type_tag");
            self.cur.extend_from_slice(&[op::EMPTY_DICT, op::MARK]);
            self.str(if t.conj { "conj" } else { "neg" });
            self.cur.push(op::NEWTRUE);
            if t.conj && t.neg {
                self.str("neg");
                self.cur.push(op::NEWTRUE);
            }
            self.cur.push(op::SETITEMS);
            self.str("Dict[str, bool]");
            self.cur.extend_from_slice(&[op::TUPLE2, op::REDUCE]);
        }
        self.cur.extend_from_slice(&[op::TUPLE, op::REDUCE]);
    }
}

/// Rewrites every class name inside a type through `map`.
pub fn map_type_names(t: &TypeExpr, map: NameMap) -> TypeExpr {
    match t {
        TypeExpr::Name(n) if n.starts_with("__torch__.") => {
            TypeExpr::Name(map(&QualifiedName::new(n.clone())).as_str().to_string())
        }
        TypeExpr::Generic(n, args) => TypeExpr::Generic(
            n.clone(),
            args.iter().map(|a| map_type_names(a, map)).collect(),
        ),
        other => other.clone(),
    }
}

/// Pickles `v` with an identity name map (no mangling).
pub fn pickle_value(
    v: &IValue,
    is_module: &dyn Fn(&QualifiedName) -> bool,
    policy: MemoPolicy,
) -> (PickleBytes, Vec<Arc<Storage>>) {
    let ident = |q: &QualifiedName| q.clone();
    let mut p = Pickler::new(is_module, &ident);
    p.plan(v, policy);
    p.finish(v)
}

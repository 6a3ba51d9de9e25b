//! The reader. It interprets only the dialect's opcodes and an allow-list of globals;
//! any other global is reported with its offset and never resolved or called.

use rustc_hash::{FxHashMap, FxHashSet as HashSet};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{FormatError, rules};

use super::opcodes as op;
use super::ops::{self, Arg, Op};
use crate::model::{
    Device, Dict, Dims, EnumValue, IValue, List, Object, ObjectState, QScheme, QualifiedName,
    Quantization, ScalarType, Sparse, SparseLayout, Storage, Str, Tensor, Tuple, TypeExpr,
};

/// Deepest container nesting accepted. Deeper inputs are refused so that every later
/// recursive walk (and dropping the value) stays well inside a thread's stack.
pub const DEFAULT_MAX_DEPTH: u32 = 1000;

/// Limits and switches of one read.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Deepest container nesting accepted ([`DEFAULT_MAX_DEPTH`] by default).
    pub max_depth: u32,
    /// Decode tensors in PyTorch's usual opcode shape directly (see `tensor_fast_path`);
    /// off, every tensor goes through the general machine. Same result either way.
    pub tensor_fast_path: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_depth: DEFAULT_MAX_DEPTH,
            tensor_fast_path: true,
        }
    }
}

/// A pickle that the reader refuses, with the offset of the failing opcode.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("pickle offset {offset}: {kind}")]
pub struct PickleError {
    /// Offset of the opcode that failed, from the start of the pickle.
    pub offset: u64,
    /// What went wrong.
    pub kind: PickleErrorKind,
}

impl PickleError {
    /// This error as a finding on `record`, under the rule for its kind: the one place
    /// that maps pickle failures to rule ids (the loader, `check` and `dump` all use it).
    pub fn in_record(self, record: &str) -> FormatError {
        let message = self.kind.to_string();
        let rule = match self.kind {
            PickleErrorKind::UnknownOpcode(_) | PickleErrorKind::ForeignOpcode(_) => {
                rules::PICKLE_OPCODE
            }
            PickleErrorKind::ForbiddenGlobal { .. }
            | PickleErrorKind::BadGlobal(_)
            | PickleErrorKind::UnsupportedGlobal(..) => rules::PICKLE_GLOBAL,
            PickleErrorKind::TooDeep(_) => rules::PICKLE_DEPTH,
            // Storages and views are the tensor model's rule, whichever format held them.
            PickleErrorKind::Storage { .. } | PickleErrorKind::View(_) => {
                return crate::model::tensor::storage_error(record, Some(self.offset), message);
            }
            _ => rules::PICKLE_STRUCTURE,
        };
        FormatError::new(rule, record, Some(self.offset), message)
    }
}

/// The finding for `len - end` bytes after the STOP at `end` of `record` (PyTorch
/// ignores them).
pub fn trailing_data(record: &str, end: usize, len: usize) -> FormatError {
    FormatError::new(
        rules::PICKLE_TRAILING,
        record,
        Some(end as u64),
        format!("{} bytes after STOP (PyTorch ignores them)", len - end),
    )
}

/// The finding for a well-formed pickle whose value is not what `record` must hold.
pub fn unexpected_value(record: &str, expected: &str, found: &IValue) -> FormatError {
    FormatError::new(
        rules::PICKLE_STRUCTURE,
        record,
        None,
        format!("expected {expected}, found {}", found.kind_name()),
    )
}

/// The ways a pickle can fail to read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleErrorKind {
    /// The data ended inside an opcode's argument (what was being read).
    #[error("unexpected end of data while reading {0}")]
    Truncated(&'static str),
    /// The first opcode is not `PROTO`.
    #[error("the pickle must start with PROTO 2")]
    MissingProto,
    /// A protocol other than 2.
    #[error("unsupported pickle protocol {0} (only 2 is accepted)")]
    Protocol(u8),
    /// A byte that is no pickle opcode at all.
    #[error("unknown opcode 0x{0:02x}")]
    UnknownOpcode(u8),
    /// A Python pickle opcode outside TorchScript's dialect (its `pickletools` name).
    #[error("opcode {0} is valid Python pickle but not part of TorchScript's dialect")]
    ForeignOpcode(&'static str),
    /// A `LONG1` whose length is not 8.
    #[error("LONG1 must have length 8, got {0}")]
    Long1Length(u8),
    /// A global outside the allow-list (never resolved).
    #[error("global {module}.{name} is not allowed (not a TorchScript type or known constructor)")]
    ForbiddenGlobal {
        /// The global's module (`os`).
        module: String,
        /// The global's name (`system`).
        name: String,
    },
    /// A `GLOBAL` whose names are not UTF-8 or not a well-formed qualified name.
    #[error("malformed GLOBAL: {0}")]
    BadGlobal(&'static str),
    /// A known PyTorch global that never occurs in a TorchScript archive (the name, and
    /// why).
    #[error("unsupported global {0}: {1}")]
    UnsupportedGlobal(String, &'static str),
    /// A `BINGET` of a memo id never stored.
    #[error("memo id {0} is not defined")]
    MissingMemo(u32),
    /// An opcode needed more items than the stack holds.
    #[error("stack underflow")]
    StackUnderflow,
    /// An opcode needed a `MARK` and none is on the stack.
    #[error("no MARK on the stack")]
    NoMark,
    /// An opcode's operand of the wrong kind.
    #[error("{op}: expected {expected}, found {found}")]
    Type {
        /// The opcode (or construct, such as `REDUCE`).
        op: &'static str,
        /// What the operand should be.
        expected: &'static str,
        /// What it is.
        found: String,
    },
    /// A malformed construct: arguments of the wrong shape for an allow-listed global, a
    /// bad
    /// persistent id or type tag, an odd `SETITEMS` (the message says which).
    #[error("{0}")]
    Invalid(String),
    /// Values nested deeper than the limit (the limit).
    #[error("values nested deeper than {0} levels")]
    TooDeep(u32),
    /// A list, dict or object changed (the operation) after it was already shared
    /// elsewhere.
    #[error(
        "{0} of a container after it was shared elsewhere (such as a list containing itself: PyTorch 2.15 loads it, ptconform's model holds no cycles)"
    )]
    SharedMutation(&'static str),
    /// Other than exactly one value on the stack at `STOP` (how many).
    #[error("{0} values on the stack at STOP (expected exactly 1)")]
    StackAtStop(usize),
    /// The data ended before `STOP`.
    #[error("no STOP opcode before the end of data")]
    NoStop,
    /// A storage the persistent id names cannot be had: bad location, negative `numel`, or
    /// the record is missing or too small.
    #[error("storage {key:?}: {message}")]
    Storage {
        /// The storage key (the record `data/<key>`).
        key: String,
        /// Why the storage was refused.
        message: String,
    },
    /// A tensor view that does not fit its storage (or is not a view at all).
    #[error("{0}")]
    View(String),
}

/// What a persistent id asks for: the storage `key` of `numel` elements of `dtype` at
/// `location`. The caller maps keys to records (`data/<key>`, `constants/<key>`).
#[derive(Debug, Clone)]
pub struct StorageRequest<'a> {
    /// The element type, from the persistent id's `<Name>Storage` class.
    pub dtype: ScalarType,
    /// The storage key, the record's name under `data/` (or `constants/`).
    pub key: &'a str,
    /// The device, parsed from the persistent id's location string (`cpu`).
    pub location: Device,
    /// Number of elements of the whole storage.
    pub numel: u64,
}

/// The globals the dialect may name. Anything else is refused.
#[derive(Clone, Debug)]
enum Global {
    RebuildTensorV2,
    RebuildQTensor,
    RebuildSparseTensor,
    Device,
    IntList,
    DoubleList,
    BoolList,
    TensorList,
    RestoreTypeTag,
    OrderedDict,
    Complex,
    /// A class or enum defined in `code/`.
    Class(QualifiedName),
}

#[derive(Clone, Debug)]
enum Item {
    /// A value and its nesting depth.
    Value(IValue, u32),
    Global(Global),
    StorageType(ScalarType),
    QScheme(QScheme),
    Storage(Arc<Storage>),
    /// `collections.OrderedDict()`: the backward-hooks placeholder of tensors.
    Hooks,
    /// A tuple holding something that is not a value (constructor arguments).
    ArgTuple(Arc<[Item]>),
}

impl Item {
    fn describe(&self) -> String {
        match self {
            Item::Value(v, _) => v.kind_name().to_string(),
            Item::Global(g) => format!("global {g:?}"),
            Item::StorageType(t) => format!("storage type {}", t.storage_name()),
            Item::QScheme(q) => format!("qscheme {}", q.name()),
            Item::Storage(_) => "storage".into(),
            Item::Hooks => "OrderedDict".into(),
            Item::ArgTuple(_) => "argument tuple".into(),
        }
    }

    fn depth(&self) -> u32 {
        match self {
            Item::Value(_, d) => *d,
            _ => 0,
        }
    }
}

/// A memo entry. Strings read from the pickle are kept as their byte range: storing or
/// comparing one then touches no reference count (a module with thousands of tensors
/// memoizes a name and a storage key per tensor); it becomes a value when fetched.
#[derive(Clone, Debug)]
enum Slot {
    Item(Item),
    Text(usize, usize),
}

/// The memo. Writers (PyTorch's and Python's) number memo entries 0, 1, 2, ... so they
/// are kept in a vector; any other id goes to a map. The vector grows by one entry per
/// BINPUT at most, so its size stays bounded by the input.
#[derive(Default)]
struct Memo {
    dense: Vec<Option<Slot>>,
    sparse: FxHashMap<u32, Slot>,
}

impl Memo {
    fn insert(&mut self, id: u32, slot: Slot) -> Option<Slot> {
        let i = id as usize;
        if i < self.dense.len() {
            self.dense[i].replace(slot)
        } else if i == self.dense.len() && self.sparse.is_empty() {
            self.dense.push(Some(slot));
            None
        } else {
            self.sparse.insert(id, slot)
        }
    }

    fn get(&self, id: u32) -> Option<&Slot> {
        match self.dense.get(id as usize) {
            Some(slot) => slot.as_ref(),
            None => self.sparse.get(&id),
        }
    }

    fn remove(&mut self, id: u32) {
        match self.dense.get_mut(id as usize) {
            Some(slot) => *slot = None,
            None => {
                self.sparse.remove(&id);
            }
        }
    }
}

/// Reads one pickle. `data` is shared so that strings can borrow from it.
pub struct Unpickler<'s> {
    data: Bytes,
    pos: usize,
    op_start: usize,
    stack: Vec<Item>,
    marks: Vec<usize>,
    memo: Memo,
    /// Memo ids holding each mutable container, so a container memoized before it is
    /// filled (as stock Python picklers do) can still be filled.
    memo_holders: FxHashMap<usize, Vec<u32>>,
    storages: &'s mut dyn FnMut(&StorageRequest) -> Result<Arc<Storage>, String>,
    options: ReadOptions,
    /// Identities of heap values that were followed by BINPUT (writers replay this to
    /// reproduce the memo decisions of the process that wrote the pickle).
    memoized: HashSet<usize>,
    fast_tensors: usize,
    /// The tensor fast path's last storage location and its parse.
    last_location: Option<(Box<[u8]>, Device)>,
    /// The tensor fast path's pending memo writes (a buffer reused across tensors).
    fast_puts: Vec<(u32, Slot)>,
}

/// The result of reading a pickle.
#[derive(Debug)]
pub struct Unpickled {
    /// The pickle's value (what was on the stack at STOP).
    pub value: IValue,
    /// Offset just past STOP.
    pub end: usize,
    /// Identities (see [`IValue::identity`]) of the heap values that were memoized.
    pub memoized: HashSet<usize>,
    /// How many tensors the tensor fast path read (the rest went the general way).
    pub fast_tensors: usize,
}

/// Reads a whole pickle and returns its value and the offset just past STOP.
pub fn unpickle(
    data: &Bytes,
    storages: &mut dyn FnMut(&StorageRequest) -> Result<Arc<Storage>, String>,
) -> Result<Unpickled, PickleError> {
    Unpickler::new(data.clone(), storages, ReadOptions::default()).run()
}

fn type_err(op: &'static str, expected: &'static str, found: &Item) -> PickleErrorKind {
    PickleErrorKind::Type {
        op,
        expected,
        found: found.describe(),
    }
}

impl<'s> Unpickler<'s> {
    /// A reader of `data`; `storages` resolves each persistent id to a storage (or a
    /// message).
    pub fn new(
        data: Bytes,
        storages: &'s mut dyn FnMut(&StorageRequest) -> Result<Arc<Storage>, String>,
        options: ReadOptions,
    ) -> Self {
        // Sized for PyTorch's densest pickles (a memoized string or storage every ~20
        // bytes, thousands of attribute items on the stack at once), so that the two
        // large vectors are not copied as they grow; capped, so a huge pickle (a 4 GiB
        // string) does not reserve in proportion.
        let memo = Memo {
            dense: Vec::with_capacity((data.len() / 16).min(1 << 17)),
            sparse: FxHashMap::default(),
        };
        let stack = Vec::with_capacity((data.len() / 32).min(1 << 16));
        Unpickler {
            data,
            pos: 0,
            op_start: 0,
            stack,
            marks: Vec::new(),
            memo,
            memo_holders: FxHashMap::default(),
            storages,
            options,
            memoized: HashSet::default(),
            fast_tensors: 0,
            last_location: None,
            fast_puts: Vec::new(),
        }
    }

    fn err(&self, kind: PickleErrorKind) -> PickleError {
        PickleError {
            offset: self.op_start as u64,
            kind,
        }
    }

    /// A GLOBAL line as text (the dialect's names are UTF-8).
    fn utf8_line(&self, line: &[u8]) -> Result<String, PickleError> {
        std::str::from_utf8(line)
            .map(str::to_string)
            .map_err(|_| self.err(PickleErrorKind::BadGlobal("name is not UTF-8")))
    }

    fn pop(&mut self) -> Result<Item, PickleError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.err(PickleErrorKind::StackUnderflow));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.err(PickleErrorKind::StackUnderflow))
    }

    fn pop_mark(&mut self) -> Result<Vec<Item>, PickleError> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.err(PickleErrorKind::NoMark))?;
        Ok(self.stack.split_off(m))
    }

    fn push_value(&mut self, v: IValue, depth: u32) -> Result<(), PickleError> {
        if depth > self.options.max_depth {
            return Err(self.err(PickleErrorKind::TooDeep(self.options.max_depth)));
        }
        self.stack.push(Item::Value(v, depth));
        Ok(())
    }

    /// Runs to STOP.
    pub fn run(mut self) -> Result<Unpickled, PickleError> {
        if self.data.len() < 2 || self.data[0] != op::PROTO {
            return Err(self.err(PickleErrorKind::MissingProto));
        }
        // A second handle on the buffer, so decoded arguments can borrow it while the
        // machine changes.
        let data = self.data.clone();
        loop {
            self.op_start = self.pos;
            let o = ops::decode(&data, self.pos)?;
            self.pos = o.end;
            if o.code == op::STOP {
                if self.stack.len() != 1 || !self.marks.is_empty() {
                    return Err(self.err(PickleErrorKind::StackAtStop(self.stack.len())));
                }
                return match self.stack.pop().unwrap() {
                    Item::Value(value, _) => Ok(Unpickled {
                        value,
                        end: self.pos,
                        memoized: std::mem::take(&mut self.memoized),
                        fast_tensors: self.fast_tensors,
                    }),
                    other => Err(self.err(type_err("STOP", "a value", &other))),
                };
            }
            self.step(o)?;
        }
    }

    fn step(&mut self, o: Op<'_>) -> Result<(), PickleError> {
        let code = o.code;
        match (code, o.arg) {
            (_, Arg::Proto(v)) => {
                if v != 2 {
                    return Err(self.err(PickleErrorKind::Protocol(v)));
                }
            }
            (_, Arg::Global { module, name }) => {
                let module = self.utf8_line(module)?;
                let name = self.utf8_line(name)?;
                let item = self.resolve_global(module, name)?;
                self.stack.push(item);
            }
            (op::BINPUT | op::LONG_BINPUT, Arg::Memo(id)) => self.memo_put(id)?,
            (_, Arg::Memo(id)) => self.memo_get(id)?,
            (_, Arg::Str(s)) => self.push_string(s)?,
            (_, Arg::Int(v)) => self.push_value(IValue::Int(v), 0)?,
            (_, Arg::Long(b)) => {
                let Ok(b) = <[u8; 8]>::try_from(b) else {
                    return Err(self.err(PickleErrorKind::Long1Length(b.len() as u8)));
                };
                self.push_value(IValue::Int(i64::from_le_bytes(b)), 0)?;
            }
            (_, Arg::Float(v)) => self.push_value(IValue::Double(v), 0)?,
            (op::MARK, _) => {
                // (Not when an open mark already sits above the callable: the general
                // machine's REDUCE refuses to pop it from under that mark.)
                let tensor_next = self.options.tensor_fast_path
                    && matches!(
                        self.stack.last(),
                        Some(Item::Global(Global::RebuildTensorV2))
                    )
                    && self.marks.last().is_none_or(|&m| m < self.stack.len())
                    && self.data.get(self.pos) == Some(&op::MARK);
                if !(tensor_next && self.tensor_fast_path()) {
                    self.marks.push(self.stack.len());
                }
            }
            (op::EMPTY_TUPLE, _) => self.tuple_from_stack(self.stack.len())?,
            (op::TUPLE1 | op::TUPLE2 | op::TUPLE3, _) => {
                let n = (code - op::TUPLE1 + 1) as usize;
                let base = self.marks.last().copied().unwrap_or(0);
                if self.stack.len() < base + n {
                    return Err(self.err(PickleErrorKind::StackUnderflow));
                }
                self.tuple_from_stack(self.stack.len() - n)?;
            }
            (op::TUPLE, _) => {
                let m = self
                    .marks
                    .pop()
                    .ok_or_else(|| self.err(PickleErrorKind::NoMark))?;
                self.tuple_from_stack(m)?;
            }
            (op::EMPTY_LIST, _) => self.push_value(new_list(Vec::new()), 1)?,
            (op::LIST, _) => {
                let items = self.pop_mark()?;
                let (values, depth) = self.values("LIST", items)?;
                self.push_value(new_list(values), depth + 1)?;
            }
            (op::APPEND, _) => {
                let v = self.pop()?;
                self.append(vec![v])?;
            }
            (op::APPENDS, _) => {
                let items = self.pop_mark()?;
                self.append(items)?;
            }
            (op::EMPTY_DICT, _) => self.push_value(new_dict(Vec::new()), 1)?,
            (op::DICT, _) => {
                let items = self.pop_mark()?;
                self.push_value(new_dict(Vec::new()), 1)?;
                self.set_items(items)?;
            }
            (op::SETITEM, _) => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.set_items(vec![k, v])?;
            }
            (op::SETITEMS, _) => {
                let m = self
                    .marks
                    .pop()
                    .ok_or_else(|| self.err(PickleErrorKind::NoMark))?;
                self.set_items_from_stack(m)?;
            }
            (op::NEWOBJ, _) => {
                let args = self.pop()?;
                let cls = self.pop()?;
                match (&cls, &args) {
                    (Item::Global(Global::Class(name)), Item::Value(IValue::Tuple(t), _))
                        if t.items.is_empty() =>
                    {
                        let obj = Object {
                            class: name.clone(),
                            state: ObjectState::Attributes(Vec::new()),
                        };
                        self.push_value(IValue::Object(Arc::new(obj)), 1)?;
                    }
                    (Item::Global(Global::Class(_)), _) => {
                        return Err(self.err(type_err("NEWOBJ", "an empty argument tuple", &args)));
                    }
                    _ => return Err(self.err(type_err("NEWOBJ", "a class global", &cls))),
                }
            }
            (op::BUILD, _) => {
                let state = self.pop()?;
                self.build(state)?;
            }
            (op::REDUCE, _) => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.reduce(callable, args)?;
            }
            (op::BINPERSID, _) => {
                let pid = self.pop()?;
                let storage = self.persistent_load(pid)?;
                self.stack.push(Item::Storage(storage));
            }
            (op::NEWTRUE, _) => self.push_value(IValue::Bool(true), 0)?,
            (op::NEWFALSE, _) => self.push_value(IValue::Bool(false), 0)?,
            (op::NONE, _) => self.push_value(IValue::None, 0)?,
            // (The decoder yields no other argument-less opcode.)
            (other, _) => return Err(self.err(PickleErrorKind::UnknownOpcode(other))),
        }
        Ok(())
    }

    /// Pushes a string decoded from the pickle.
    fn push_string(&mut self, s: &[u8]) -> Result<(), PickleError> {
        // Zero-copy: the string shares the pickle's buffer (a >4 GiB string stays in
        // the memory map).
        let s = self.data.slice_ref(s);
        self.push_value(IValue::String(Str(s)), 0)
    }

    fn resolve_global(&mut self, module: String, name: String) -> Result<Item, PickleError> {
        let g = match (module.as_str(), name.as_str()) {
            ("torch._utils", "_rebuild_tensor_v2") => Item::Global(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_qtensor") => Item::Global(Global::RebuildQTensor),
            ("torch._utils", "_rebuild_sparse_tensor") => Item::Global(Global::RebuildSparseTensor),
            ("torch", "device") => Item::Global(Global::Device),
            ("torch.jit._pickle", "build_intlist") => Item::Global(Global::IntList),
            ("torch.jit._pickle", "build_doublelist") => Item::Global(Global::DoubleList),
            ("torch.jit._pickle", "build_boollist") => Item::Global(Global::BoolList),
            ("torch.jit._pickle", "build_tensorlist") => Item::Global(Global::TensorList),
            ("torch.jit._pickle", "restore_type_tag") => Item::Global(Global::RestoreTypeTag),
            ("torch.jit._pickle", "build_tensor_from_id")
            | ("torch.distributed.rpc", "rref")
            | ("__main__", "TensorID")
            | ("__main__", "IntList") => {
                return Err(self.err(PickleErrorKind::UnsupportedGlobal(
                    format!("{module}.{name}"),
                    "only meaningful for RPC or pre-1.0 archives, never in a TorchScript archive",
                )));
            }
            ("collections", "OrderedDict") => Item::Global(Global::OrderedDict),
            ("builtins", "complex") => Item::Global(Global::Complex),
            ("torch", n)
                if n.ends_with("Storage") && ScalarType::from_storage_name(n).is_some() =>
            {
                Item::StorageType(ScalarType::from_storage_name(n).unwrap())
            }
            ("torch", n) if QScheme::from_name(n).is_some() => {
                Item::QScheme(QScheme::from_name(n).unwrap())
            }
            (m, n) if (m == "__torch__" || m.starts_with("__torch__.")) && is_identifier(n) => {
                if m.split('.').any(|a| !is_identifier(a)) {
                    return Err(
                        self.err(PickleErrorKind::BadGlobal("malformed qualified class name"))
                    );
                }
                Item::Global(Global::Class(QualifiedName::join(m, n)))
            }
            _ => {
                return Err(self.err(PickleErrorKind::ForbiddenGlobal { module, name }));
            }
        };
        Ok(g)
    }

    fn memo_put(&mut self, id: u32) -> Result<(), PickleError> {
        let Some(top) = self.stack.last() else {
            return Err(self.err(PickleErrorKind::StackUnderflow));
        };
        let top = top.clone();
        self.memo_store(id, top);
        Ok(())
    }

    /// Stores `top` under `id`, keeping track of mutable containers and memoized values.
    fn memo_store(&mut self, id: u32, top: Item) {
        let slot = self.slot(top);
        self.memo_store_slot(id, slot);
    }

    /// The memo form of `item`: a string from the pickle's bytes as its range.
    fn slot(&self, item: Item) -> Slot {
        if let Item::Value(IValue::String(s), 0) = &item
            && let Some((start, end)) = self.range_in_data(s.as_bytes())
        {
            return Slot::Text(start, end);
        }
        Slot::Item(item)
    }

    /// Where `bytes` lies in the pickle, if it is a slice of it.
    fn range_in_data(&self, bytes: &[u8]) -> Option<(usize, usize)> {
        let base = self.data.as_ptr() as usize;
        let start = (bytes.as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(bytes.len())?;
        (!bytes.is_empty() && end <= self.data.len()).then_some((start, end))
    }

    fn memo_store_slot(&mut self, id: u32, slot: Slot) {
        let (holder, identity) = match &slot {
            Slot::Item(top @ Item::Value(v, _)) => (mutable_identity(top), v.identity()),
            _ => (None, None),
        };
        if let Some(Slot::Item(old)) = self.memo.insert(id, slot)
            && let Some(ptr) = mutable_identity(&old)
            && let Some(ids) = self.memo_holders.get_mut(&ptr)
        {
            ids.retain(|&i| i != id);
        }
        if let Some(ptr) = holder {
            self.memo_holders.entry(ptr).or_default().push(id);
        }
        if let Some(ptr) = identity {
            self.memoized.insert(ptr);
        }
    }

    /// The memo entry `id` as a stack item.
    fn memo_item(&self, slot: &Slot) -> Item {
        match slot {
            Slot::Item(item) => item.clone(),
            &Slot::Text(start, end) => {
                Item::Value(IValue::String(Str(self.data.slice(start..end))), 0)
            }
        }
    }

    fn memo_get(&mut self, id: u32) -> Result<(), PickleError> {
        let item = match self.memo.get(id) {
            Some(slot) => self.memo_item(slot),
            None => return Err(self.err(PickleErrorKind::MissingMemo(id))),
        };
        self.stack.push(item);
        Ok(())
    }

    fn values(
        &self,
        op: &'static str,
        items: Vec<Item>,
    ) -> Result<(Vec<IValue>, u32), PickleError> {
        let mut depth = 0;
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            match it {
                Item::Value(v, d) => {
                    depth = depth.max(d);
                    out.push(v);
                }
                other => return Err(self.err(type_err(op, "a value", &other))),
            }
        }
        Ok((out, depth))
    }

    /// Replaces the stack items from `start` on with a tuple of them. A tuple of values
    /// is built straight from the stack (one vector, no intermediate one); a tuple holding
    /// something else (constructor arguments) becomes an argument tuple.
    fn tuple_from_stack(&mut self, start: usize) -> Result<(), PickleError> {
        let items = &self.stack[start..];
        let depth = items.iter().map(Item::depth).max().unwrap_or(0);
        if items.iter().all(|i| matches!(i, Item::Value(..))) {
            let values: Vec<IValue> = self
                .stack
                .drain(start..)
                .filter_map(|i| match i {
                    Item::Value(v, _) => Some(v),
                    _ => None,
                })
                .collect();
            let tuple = Tuple {
                items: values,
                named: None,
            };
            self.push_value(IValue::Tuple(Arc::new(tuple)), depth + 1)
        } else {
            if depth + 1 > self.options.max_depth {
                return Err(self.err(PickleErrorKind::TooDeep(self.options.max_depth)));
            }
            let items: Arc<[Item]> = self.stack.drain(start..).collect();
            self.stack.push(Item::ArgTuple(items));
            Ok(())
        }
    }

    /// Gives mutable access to the container on top of the stack. If the memo also holds
    /// it (and nothing else does), the memo entries are re-pointed afterwards; a container
    /// already embedded in another value cannot be changed without breaking sharing, so
    /// that is refused.
    fn mutate_top(
        &mut self,
        what: &'static str,
        extra_depth: u32,
        f: impl FnOnce(&mut IValue) -> Result<(), PickleErrorKind>,
    ) -> Result<(), PickleError> {
        let Some(Item::Value(v, depth)) = self.stack.pop() else {
            return Err(self.err(PickleErrorKind::StackUnderflow));
        };
        let ptr = v.identity();
        let holders = ptr
            .and_then(|p| self.memo_holders.remove(&p))
            .unwrap_or_default();
        for &id in &holders {
            self.memo.remove(id);
        }
        let mut v = v;
        let unique = match &mut v {
            IValue::List(l) => Arc::get_mut(l).is_some(),
            IValue::Dict(d) => Arc::get_mut(d).is_some(),
            IValue::Object(o) => Arc::get_mut(o).is_some(),
            _ => true,
        };
        if !unique {
            return Err(self.err(PickleErrorKind::SharedMutation(what)));
        }
        f(&mut v).map_err(|k| self.err(k))?;
        let depth = depth.max(extra_depth + 1);
        if depth > self.options.max_depth {
            return Err(self.err(PickleErrorKind::TooDeep(self.options.max_depth)));
        }
        if let (Some(p), false) = (v.identity(), holders.is_empty()) {
            for id in &holders {
                self.memo
                    .insert(*id, Slot::Item(Item::Value(v.clone(), depth)));
            }
            self.memo_holders.insert(p, holders);
        }
        self.stack.push(Item::Value(v, depth));
        Ok(())
    }

    fn append(&mut self, items: Vec<Item>) -> Result<(), PickleError> {
        let (values, depth) = self.values("APPENDS", items)?;
        match self.stack.last() {
            Some(Item::Value(IValue::List(_), _)) => {}
            Some(other) => return Err(self.err(type_err("APPENDS", "a list", other))),
            None => return Err(self.err(PickleErrorKind::StackUnderflow)),
        }
        self.mutate_top("APPENDS", depth, |v| {
            if let IValue::List(l) = v {
                Arc::get_mut(l).unwrap().items.extend(values);
            }
            Ok(())
        })
    }

    /// Checks SETITEMS' key-value items and the dict under them (at `dict`); returns
    /// the items' depth.
    fn check_set_items(&self, items: &[Item], dict: Option<&Item>) -> Result<u32, PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err(PickleErrorKind::Invalid(
                "SETITEMS with an odd number of items".into(),
            )));
        }
        let mut depth = 0;
        for it in items {
            match it {
                Item::Value(_, d) => depth = depth.max(*d),
                other => return Err(self.err(type_err("SETITEMS", "a value", other))),
            }
        }
        match dict {
            Some(Item::Value(IValue::Dict(_), _)) => Ok(depth),
            Some(other) => Err(self.err(type_err("SETITEMS", "a dict", other))),
            None => Err(self.err(PickleErrorKind::StackUnderflow)),
        }
    }

    fn set_items(&mut self, items: Vec<Item>) -> Result<(), PickleError> {
        let depth = self.check_set_items(&items, self.stack.last())?;
        let pairs = pairs_of(items.into_iter());
        self.fill_top_dict(depth, pairs)
    }

    /// SETITEMS: the items above the mark at `start` go straight from the stack into
    /// the dict below it (a module's attribute dict can hold thousands of entries).
    fn set_items_from_stack(&mut self, start: usize) -> Result<(), PickleError> {
        let dict = start.checked_sub(1).and_then(|i| self.stack.get(i));
        let depth = self.check_set_items(&self.stack[start..], dict)?;
        let pairs = pairs_of(self.stack.drain(start..));
        self.fill_top_dict(depth, pairs)
    }

    fn fill_top_dict(
        &mut self,
        depth: u32,
        mut pairs: Vec<(IValue, IValue)>,
    ) -> Result<(), PickleError> {
        self.mutate_top("SETITEMS", depth, |v| {
            if let IValue::Dict(d) = v {
                let d = Arc::get_mut(d).unwrap();
                if d.entries.is_empty() {
                    d.entries = pairs;
                } else {
                    d.entries.append(&mut pairs);
                }
            }
            Ok(())
        })
    }

    fn build(&mut self, state: Item) -> Result<(), PickleError> {
        let Item::Value(state, depth) = state else {
            return Err(self.err(type_err("BUILD", "a state value", &state)));
        };
        match self.stack.last() {
            Some(Item::Value(IValue::Object(_), _)) => {}
            Some(other) => return Err(self.err(type_err("BUILD", "an object", other))),
            None => return Err(self.err(PickleErrorKind::StackUnderflow)),
        }
        let new_state = match &state {
            // An untyped dict is the attribute dict of the default state form.
            IValue::Dict(d) if is_untyped(d) => {
                let mut attrs = Vec::with_capacity(d.entries.len());
                for (k, v) in &d.entries {
                    match k {
                        IValue::String(s) => attrs.push((s.clone(), v.clone())),
                        other => {
                            return Err(self.err(PickleErrorKind::Type {
                                op: "BUILD",
                                expected: "string attribute names",
                                found: other.kind_name().into(),
                            }));
                        }
                    }
                }
                ObjectState::Attributes(attrs)
            }
            _ => ObjectState::SetState(state),
        };
        self.mutate_top("BUILD", depth, |v| {
            if let IValue::Object(o) = v {
                Arc::get_mut(o).unwrap().state = new_state;
            }
            Ok(())
        })
    }

    fn reduce(&mut self, callable: Item, args: Item) -> Result<(), PickleError> {
        let Item::Global(g) = callable else {
            return Err(self.err(type_err("REDUCE", "a global", &callable)));
        };
        let depth = args.depth();
        match g {
            Global::Class(name) => {
                // Enum members are pickled as `GLOBAL <enum>` + value + REDUCE.
                let Item::Value(value, _) = args else {
                    return Err(self.err(type_err("REDUCE", "an enum value", &args)));
                };
                let value = match value {
                    IValue::Tuple(t) if t.items.len() == 1 => t.items[0].clone(),
                    v => v,
                };
                if !matches!(
                    value,
                    IValue::Int(_) | IValue::Double(_) | IValue::String(_)
                ) {
                    return Err(self.err(PickleErrorKind::Type {
                        op: "REDUCE",
                        expected: "an int, float or str enum value",
                        found: value.kind_name().into(),
                    }));
                }
                let e = EnumValue {
                    enum_type: name,
                    value,
                };
                self.push_value(IValue::Enum(Arc::new(e)), 1)
            }
            Global::OrderedDict => {
                self.stack.push(Item::Hooks);
                Ok(())
            }
            Global::Complex => {
                let a = self.arg_values("complex", &args)?;
                let num = |v: &IValue| match v {
                    IValue::Double(f) => Some(*f),
                    IValue::Int(i) => Some(*i as f64),
                    _ => None,
                };
                match a.as_slice() {
                    [re, im] if num(re).is_some() && num(im).is_some() => {
                        self.push_value(IValue::Complex(num(re).unwrap(), num(im).unwrap()), 0)
                    }
                    _ => Err(self.err(PickleErrorKind::Invalid(
                        "complex expects (real, imag)".into(),
                    ))),
                }
            }
            Global::Device => {
                let a = self.arg_values("device", &args)?;
                match a.as_slice() {
                    [IValue::String(s)] => {
                        let text = s.to_string_lossy();
                        let d = Device::parse(&text)
                            .map_err(|e| self.err(PickleErrorKind::Invalid(e.to_string())))?;
                        self.push_value(IValue::Device(d), 0)
                    }
                    _ => Err(self.err(PickleErrorKind::Invalid(
                        "torch.device expects one string".into(),
                    ))),
                }
            }
            Global::IntList | Global::DoubleList | Global::BoolList | Global::TensorList => {
                let a = self.arg_values("typed list", &args)?;
                let [IValue::List(l)] = a.as_slice() else {
                    return Err(self.err(PickleErrorKind::Invalid(
                        "typed list builders expect a 1-tuple holding a list".into(),
                    )));
                };
                let (elem, ok): (&str, fn(&IValue) -> bool) = match g {
                    Global::IntList => ("int", |v| matches!(v, IValue::Int(_))),
                    Global::DoubleList => ("float", |v| matches!(v, IValue::Double(_))),
                    Global::BoolList => ("bool", |v| matches!(v, IValue::Bool(_))),
                    _ => ("Tensor", |v| matches!(v, IValue::Tensor(_))),
                };
                if let Some(bad) = l.items.iter().find(|v| !ok(v)) {
                    return Err(self.err(PickleErrorKind::Invalid(format!(
                        "List[{elem}] holds a {}",
                        bad.kind_name()
                    ))));
                }
                let list = List {
                    elem_type: TypeExpr::name(elem),
                    items: l.items.clone(),
                };
                self.push_value(IValue::List(Arc::new(list)), depth)
            }
            Global::RestoreTypeTag => {
                let a = self.arg_values("restore_type_tag", &args)?;
                let [container, IValue::String(ty)] = a.as_slice() else {
                    return Err(self.err(PickleErrorKind::Invalid(
                        "restore_type_tag expects (container, type string)".into(),
                    )));
                };
                let ty_text = ty.to_string_lossy();
                let ty = TypeExpr::parse(&ty_text)
                    .map_err(|e| self.err(PickleErrorKind::Invalid(e.to_string())))?;
                let tagged = match (container, ty.head(), ty.args()) {
                    (IValue::List(l), "List", [elem]) => IValue::List(Arc::new(List {
                        elem_type: elem.clone(),
                        items: l.items.clone(),
                    })),
                    (IValue::Dict(d), "Dict", [k, v]) => IValue::Dict(Arc::new(Dict {
                        key_type: k.clone(),
                        value_type: v.clone(),
                        entries: d.entries.clone(),
                    })),
                    _ => {
                        return Err(self.err(PickleErrorKind::Invalid(format!(
                            "type tag {ty_text:?} does not fit a {}",
                            container.kind_name()
                        ))));
                    }
                };
                self.push_value(tagged, depth)
            }
            Global::RebuildTensorV2 => self.rebuild_tensor(args, false),
            Global::RebuildQTensor => self.rebuild_tensor(args, true),
            Global::RebuildSparseTensor => self.rebuild_sparse_tensor(args),
        }
    }

    /// `_rebuild_sparse_tensor(layout, sizes, requires_grad, component..., OrderedDict())`
    /// as PyTorch's pickler writes it: COO components `indices, values`; CSR
    /// `crow_indices, col_indices, values`. Other layouts PyTorch neither writes nor reads.
    fn rebuild_sparse_tensor(&mut self, args: Item) -> Result<(), PickleError> {
        let items: &[Item] = match &args {
            Item::ArgTuple(t) => t,
            other => return Err(self.err(type_err("REDUCE", "sparse tensor arguments", other))),
        };
        let Some(Item::Value(IValue::Int(layout_number), _)) = items.first() else {
            return Err(self.err(PickleErrorKind::Invalid(
                "_rebuild_sparse_tensor takes the layout number first".into(),
            )));
        };
        let layout = SparseLayout::from_number(*layout_number).ok_or_else(|| {
            self.err(PickleErrorKind::Invalid(format!(
                "sparse layout {layout_number} is not one PyTorch serializes (1 = sparse_coo, 2 = sparse_csr); torch.jit.load refuses it"
            )))
        })?;
        let n = 3 + layout.components() + 1;
        if items.len() != n {
            return Err(self.err(PickleErrorKind::Invalid(format!(
                "_rebuild_sparse_tensor with layout {} takes {n} arguments, got {}",
                layout.name(),
                items.len()
            ))));
        }
        let sizes = self.int_tuple("int sizes", &items[1])?;
        if let Some(s) = sizes.iter().find(|&&s| s < 0) {
            return Err(self.err(PickleErrorKind::Invalid(format!(
                "sparse tensor size {s} is negative"
            ))));
        }
        let Item::Value(IValue::Bool(requires_grad), _) = items[2] else {
            return Err(self.err(type_err("REDUCE", "a bool requires_grad", &items[2])));
        };
        let mut components = Vec::with_capacity(layout.components());
        for item in &items[3..3 + layout.components()] {
            match item {
                Item::Value(IValue::Tensor(t), _) if t.sparse.is_none() => {
                    components.push(t.clone())
                }
                other => {
                    return Err(self.err(type_err("REDUCE", "a dense component tensor", other)));
                }
            }
        }
        if !matches!(items[n - 1], Item::Hooks) {
            return Err(self.err(type_err(
                "REDUCE",
                "the OrderedDict() hooks placeholder",
                &items[n - 1],
            )));
        }
        let values = components.last().expect("every layout has values");
        let tensor = Tensor {
            storage: values.storage.clone(),
            storage_offset: 0,
            sizes: sizes.into(),
            strides: Dims::new(),
            requires_grad,
            conj: false,
            neg: false,
            quantization: None,
            sparse: Some(Arc::new(Sparse { layout, components })),
        };
        let depth = args.depth();
        self.push_value(IValue::Tensor(Arc::new(tensor)), depth)
    }

    fn arg_values(&self, what: &'static str, args: &Item) -> Result<Vec<IValue>, PickleError> {
        match args {
            Item::Value(IValue::Tuple(t), _) => Ok(t.items.clone()),
            other => Err(self.err(type_err("REDUCE", what, other))),
        }
    }

    fn persistent_load(&mut self, pid: Item) -> Result<Arc<Storage>, PickleError> {
        let items: Arc<[Item]> = match pid {
            Item::ArgTuple(t) => t,
            other => {
                return Err(self.err(type_err(
                    "BINPERSID",
                    "('storage', type, key, location, numel)",
                    &other,
                )));
            }
        };
        let bad = |s: &Self| {
            s.err(PickleErrorKind::Invalid(
                "persistent id must be ('storage', <Type>Storage, key, location, numel)".into(),
            ))
        };
        let [
            tag,
            Item::StorageType(dtype),
            Item::Value(IValue::String(key), _),
            Item::Value(IValue::String(loc), _),
            Item::Value(IValue::Int(numel), _),
        ] = &items[..]
        else {
            return Err(bad(self));
        };
        if !matches!(tag, Item::Value(IValue::String(s), _) if s.as_bytes() == b"storage") {
            return Err(bad(self));
        }
        // Borrowed unless the bytes are not UTF-8 (no allocation per storage).
        let key = String::from_utf8_lossy(key.as_bytes());
        let location = Device::parse(&String::from_utf8_lossy(loc.as_bytes())).map_err(|e| {
            self.err(PickleErrorKind::Storage {
                key: key.to_string(),
                message: e.to_string(),
            })
        })?;
        if *numel < 0 {
            return Err(self.err(PickleErrorKind::Storage {
                key: key.to_string(),
                message: format!("negative numel {numel}"),
            }));
        }
        let req = StorageRequest {
            dtype: *dtype,
            key: &key,
            location,
            numel: *numel as u64,
        };
        (self.storages)(&req).map_err(|message| {
            self.err(PickleErrorKind::Storage {
                key: key.to_string(),
                message,
            })
        })
    }

    fn int_tuple(&self, what: &'static str, item: &Item) -> Result<Vec<i64>, PickleError> {
        let Item::Value(IValue::Tuple(t), _) = item else {
            return Err(self.err(type_err("REDUCE", what, item)));
        };
        t.items
            .iter()
            .map(|v| match v {
                IValue::Int(i) => Ok(*i),
                other => Err(self.err(PickleErrorKind::Type {
                    op: "REDUCE",
                    expected: what,
                    found: other.kind_name().into(),
                })),
            })
            .collect()
    }

    fn rebuild_tensor(&mut self, args: Item, quantized: bool) -> Result<(), PickleError> {
        let items: &[Item] = match &args {
            Item::ArgTuple(t) => t,
            other => return Err(self.err(type_err("REDUCE", "tensor arguments", other))),
        };
        let n = items.len();
        let expected_ok = if quantized { n == 7 } else { n == 6 || n == 7 };
        if !expected_ok {
            return Err(self.err(PickleErrorKind::Invalid(format!(
                "{} takes {} arguments, got {n}",
                if quantized {
                    "_rebuild_qtensor"
                } else {
                    "_rebuild_tensor_v2"
                },
                if quantized { "7" } else { "6 or 7" }
            ))));
        }
        let Item::Storage(storage) = &items[0] else {
            return Err(self.err(type_err("REDUCE", "a storage", &items[0])));
        };
        let Item::Value(IValue::Int(offset), _) = items[1] else {
            return Err(self.err(type_err("REDUCE", "an int storage offset", &items[1])));
        };
        let sizes = self.int_tuple("int sizes", &items[2])?;
        let strides = self.int_tuple("int strides", &items[3])?;
        let (qitem, rg_index) = if quantized {
            (Some(&items[4]), 5)
        } else {
            (None, 4)
        };
        let Item::Value(IValue::Bool(requires_grad), _) = items[rg_index] else {
            return Err(self.err(type_err("REDUCE", "a bool requires_grad", &items[rg_index])));
        };
        if !matches!(items[rg_index + 1], Item::Hooks) {
            return Err(self.err(type_err(
                "REDUCE",
                "the OrderedDict() hooks placeholder",
                &items[rg_index + 1],
            )));
        }
        let (mut conj, mut neg) = (false, false);
        if !quantized && n == 7 {
            let Item::Value(IValue::Dict(d), _) = &items[6] else {
                return Err(self.err(type_err("REDUCE", "a math-bits dict", &items[6])));
            };
            for (k, v) in &d.entries {
                match (k, v) {
                    (IValue::String(s), IValue::Bool(b)) if s.as_bytes() == b"conj" => conj = *b,
                    (IValue::String(s), IValue::Bool(b)) if s.as_bytes() == b"neg" => neg = *b,
                    _ => {
                        return Err(self.err(PickleErrorKind::Invalid(
                            "math bits must be {\"conj\": bool} or {\"neg\": bool}".into(),
                        )));
                    }
                }
            }
        }
        let quantization = match qitem {
            None => None,
            Some(q) => Some(self.qparams(q)?),
        };
        if quantized != storage.dtype.is_quantized() {
            return Err(self.err(PickleErrorKind::Invalid(format!(
                "{} storage used by {}",
                storage.dtype.storage_name(),
                if quantized {
                    "_rebuild_qtensor"
                } else {
                    "_rebuild_tensor_v2"
                }
            ))));
        }
        let tensor = Tensor {
            storage: storage.clone(),
            storage_offset: offset,
            sizes: sizes.into(),
            strides: strides.into(),
            requires_grad,
            conj,
            neg,
            quantization,
            sparse: None,
        };
        tensor
            .check_view()
            .map_err(|m| self.err(PickleErrorKind::View(m)))?;
        let depth = args.depth();
        self.push_value(IValue::Tensor(Arc::new(tensor)), depth)
    }

    fn qparams(&self, item: &Item) -> Result<Quantization, PickleError> {
        let items: Vec<Item> = match item {
            Item::ArgTuple(t) => t.to_vec(),
            other => return Err(self.err(type_err("REDUCE", "quantizer parameters", other))),
        };
        let bad = || {
            self.err(PickleErrorKind::Invalid(
                "quantizer parameters must be (qscheme, scale, zero_point) or (qscheme, scales, zero_points, axis)".into(),
            ))
        };
        match items.as_slice() {
            [
                Item::QScheme(s),
                Item::Value(scale, _),
                Item::Value(IValue::Int(zp), _),
            ] if !s.is_per_channel() => {
                let scale = match scale {
                    IValue::Double(f) => *f,
                    IValue::Int(i) => *i as f64,
                    _ => return Err(bad()),
                };
                Ok(Quantization::PerTensor {
                    scheme: *s,
                    scale,
                    zero_point: *zp,
                })
            }
            [
                Item::QScheme(s),
                Item::Value(IValue::Tensor(scales), _),
                Item::Value(IValue::Tensor(zps), _),
                Item::Value(IValue::Int(axis), _),
            ] if s.is_per_channel() => Ok(Quantization::PerChannel {
                scheme: *s,
                scales: scales.clone(),
                zero_points: zps.clone(),
                axis: *axis,
            }),
            _ => Err(bad()),
        }
    }
}

impl<'s> Unpickler<'s> {
    /// Reads `_rebuild_tensor_v2`'s arguments and the REDUCE in the one shape PyTorch's
    /// pickler writes them (the callable is on the stack; `pos` is at the arguments'
    /// inner MARK):
    ///
    /// `MARK MARK 'storage' <T>Storage key location numel TUPLE BINPERSID [BINPUT] offset
    /// sizes strides NEWTRUE|NEWFALSE OrderedDict EMPTY_TUPLE REDUCE TUPLE REDUCE`
    ///
    /// with strings and globals either written (optionally memoized) or fetched from the
    /// memo. A module with thousands of small tensors spends most of its load here, and
    /// the general machine allocates a tuple or item vector for each of the five tuples.
    /// Anything else (another shape, a value out of range, an error of any kind) returns
    /// false with nothing changed but the storage lookup (which the general machine then
    /// repeats, getting the same storage), and the general machine reads it instead.
    fn tensor_fast_path(&mut self) -> bool {
        if self.options.max_depth < 3 {
            return false;
        }
        let start = self.pos;
        // Memo writes are held back (in order) until the whole tensor has been read.
        self.fast_puts.clear();
        let data = self.data.clone();
        match self.read_fast_tensor(&data) {
            Some(tensor) => {
                let mut puts = std::mem::take(&mut self.fast_puts);
                for (id, slot) in puts.drain(..) {
                    self.memo_store_slot(id, slot);
                }
                self.fast_puts = puts;
                self.stack.pop(); // the _rebuild_tensor_v2 global
                self.stack
                    .push(Item::Value(IValue::Tensor(Arc::new(tensor)), 0));
                self.fast_tensors += 1;
                true
            }
            None => {
                self.fast_puts.clear();
                self.pos = start;
                false
            }
        }
    }

    /// The next opcode, through the shared decoder (`data` is `self.data`).
    #[inline(always)]
    fn fast_op<'d>(&mut self, data: &'d [u8]) -> Option<Op<'d>> {
        let o = ops::decode(data, self.pos).ok()?;
        self.pos = o.end;
        Some(o)
    }

    #[inline(always)]
    fn fast_code(&mut self, data: &[u8]) -> Option<u8> {
        self.fast_op(data).map(|o| o.code)
    }

    /// An optional BINPUT/LONG_BINPUT of `slot`, recorded for the commit.
    #[inline(always)]
    fn fast_put(&mut self, data: &[u8], slot: impl FnOnce() -> Slot) -> Option<()> {
        if !matches!(data.get(self.pos), Some(&(op::BINPUT | op::LONG_BINPUT))) {
            return Some(());
        }
        let Arg::Memo(id) = self.fast_op(data)?.arg else {
            return None;
        };
        self.fast_puts.push((id, slot()));
        Some(())
    }

    /// A memo read, seeing this tensor's pending writes first.
    #[inline(always)]
    fn fast_get(&self, id: u32) -> Option<&Slot> {
        match self.fast_puts.iter().rev().find(|(i, _)| *i == id) {
            Some((_, slot)) => Some(slot),
            None => self.memo.get(id),
        }
    }

    /// A string (BINUNICODE, optionally memoized, or a memo read of one) as its range in
    /// the pickle.
    #[inline(always)]
    fn fast_string(&mut self, data: &[u8]) -> Option<(usize, usize)> {
        let o = self.fast_op(data)?;
        match (o.code, o.arg) {
            (op::BINUNICODE, Arg::Str(text)) => {
                // An empty string has no range (the general machine memoizes it as a value).
                if text.is_empty() {
                    return None;
                }
                let (start, end) = (o.end - text.len(), o.end);
                self.fast_put(data, || Slot::Text(start, end))?;
                Some((start, end))
            }
            (op::BINGET | op::LONG_BINGET, Arg::Memo(id)) => match self.fast_get(id)? {
                &Slot::Text(start, end) => Some((start, end)),
                // (Strings from the pickle are memoized as ranges; nothing else is one.)
                _ => None,
            },
            _ => None,
        }
    }

    /// A global (GLOBAL, optionally memoized, or a memo read), resolved as usual.
    fn fast_global(&mut self, data: &[u8]) -> Option<Item> {
        let o = self.fast_op(data)?;
        match (o.code, o.arg) {
            (_, Arg::Global { module, name }) => {
                let module = self.utf8_line(module).ok()?;
                let name = self.utf8_line(name).ok()?;
                let item = self.resolve_global(module, name).ok()?;
                self.fast_put(data, || Slot::Item(item.clone()))?;
                Some(item)
            }
            (op::BINGET | op::LONG_BINGET, Arg::Memo(id)) => match self.fast_get(id)? {
                // (Only the two globals the fast path wants: no other is cloned.)
                Slot::Item(Item::StorageType(t)) => Some(Item::StorageType(*t)),
                Slot::Item(Item::Global(Global::OrderedDict)) => {
                    Some(Item::Global(Global::OrderedDict))
                }
                _ => None,
            },
            _ => None,
        }
    }

    #[inline(always)]
    fn fast_int(&mut self, data: &[u8]) -> Option<i64> {
        match self.fast_op(data)?.arg {
            Arg::Int(v) => Some(v),
            Arg::Long(b) => Some(i64::from_le_bytes(b.try_into().ok()?)),
            _ => None,
        }
    }

    /// A tuple of ints: EMPTY_TUPLE, 1-3 ints and TUPLE1-3, or MARK ints TUPLE.
    fn fast_int_tuple(&mut self, data: &[u8]) -> Option<Dims> {
        let mut out = Dims::new();
        match *data.get(self.pos)? {
            op::EMPTY_TUPLE => {
                self.fast_op(data)?;
                return Some(out);
            }
            op::MARK => {
                self.fast_op(data)?;
                while *data.get(self.pos)? != op::TUPLE {
                    out.push(self.fast_int(data)?);
                }
                self.fast_op(data)?;
                return Some(out);
            }
            _ => {}
        }
        loop {
            match *data.get(self.pos)? {
                code @ (op::TUPLE1 | op::TUPLE2 | op::TUPLE3) => {
                    self.fast_op(data)?;
                    return (out.len() == (code - op::TUPLE1 + 1) as usize).then_some(out);
                }
                _ if out.len() < 3 => out.push(self.fast_int(data)?),
                _ => return None,
            }
        }
    }

    fn read_fast_tensor(&mut self, data: &[u8]) -> Option<Tensor> {
        // The persistent id: ('storage', <T>Storage, key, location, numel).
        (self.fast_code(data)? == op::MARK).then_some(())?;
        let (s, e) = self.fast_string(data)?;
        if &data[s..e] != b"storage" {
            return None;
        }
        let Item::StorageType(dtype) = self.fast_global(data)? else {
            return None;
        };
        let (key_start, key_end) = self.fast_string(data)?;
        let (loc_start, loc_end) = self.fast_string(data)?;
        let numel = self.fast_int(data)?;
        (self.fast_code(data)? == op::TUPLE && self.fast_code(data)? == op::BINPERSID)
            .then_some(())?;
        // Every storage of a file usually names the same location: parse it once.
        let location = &data[loc_start..loc_end];
        let location = match &self.last_location {
            Some((text, device)) if **text == *location => *device,
            _ => {
                let device = Device::parse(&String::from_utf8_lossy(location)).ok()?;
                self.last_location = Some((location.into(), device));
                device
            }
        };
        let numel = u64::try_from(numel).ok()?;
        let key_bytes = &data[key_start..key_end];
        let key = match std::str::from_utf8(key_bytes) {
            Ok(k) => std::borrow::Cow::Borrowed(k),
            Err(_) => String::from_utf8_lossy(key_bytes),
        };
        let req = StorageRequest {
            dtype,
            key: &key,
            location,
            numel,
        };
        let storage = (self.storages)(&req).ok()?;
        if storage.dtype.is_quantized() {
            return None;
        }
        self.fast_put(data, || Slot::Item(Item::Storage(storage.clone())))?;
        // offset, sizes, strides, requires_grad, the hooks placeholder.
        let storage_offset = self.fast_int(data)?;
        let sizes = self.fast_int_tuple(data)?;
        let strides = self.fast_int_tuple(data)?;
        let requires_grad = match self.fast_code(data)? {
            op::NEWTRUE => true,
            op::NEWFALSE => false,
            _ => return None,
        };
        let Item::Global(Global::OrderedDict) = self.fast_global(data)? else {
            return None;
        };
        for want in [op::EMPTY_TUPLE, op::REDUCE, op::TUPLE, op::REDUCE] {
            (self.fast_code(data)? == want).then_some(())?;
        }
        let tensor = Tensor {
            storage,
            storage_offset,
            sizes,
            strides,
            requires_grad,
            conj: false,
            neg: false,
            quantization: None,
            sparse: None,
        };
        tensor.check_view().ok()?;
        Some(tensor)
    }
}

/// Key-value pairs of items already checked to be values.
fn pairs_of(items: impl ExactSizeIterator<Item = Item>) -> Vec<(IValue, IValue)> {
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut values = items.filter_map(|i| match i {
        Item::Value(v, _) => Some(v),
        _ => None,
    });
    while let (Some(k), Some(v)) = (values.next(), values.next()) {
        pairs.push((k, v));
    }
    pairs
}

fn mutable_identity(item: &Item) -> Option<usize> {
    match item {
        Item::Value(v @ (IValue::List(_) | IValue::Dict(_) | IValue::Object(_)), _) => v.identity(),
        _ => None,
    }
}

const UNTYPED: &str = "Any";

fn new_list(items: Vec<IValue>) -> IValue {
    IValue::List(Arc::new(List {
        elem_type: TypeExpr::name(UNTYPED),
        items,
    }))
}

fn new_dict(entries: Vec<(IValue, IValue)>) -> IValue {
    IValue::Dict(Arc::new(Dict {
        key_type: TypeExpr::name(UNTYPED),
        value_type: TypeExpr::name(UNTYPED),
        entries,
    }))
}

/// A dict built by `}`/SETITEMS without a `restore_type_tag`.
pub fn is_untyped(d: &Dict) -> bool {
    matches!(&d.key_type, TypeExpr::Name(n) if n == UNTYPED)
}

use crate::code::is_name_component as is_identifier;

#[cfg(test)]
mod tests {
    use super::*;

    fn read(data: &[u8]) -> Result<IValue, PickleError> {
        let mut storages = |_: &StorageRequest| Err("no storages here".to_string());
        let data = Bytes::copy_from_slice(data);
        unpickle(&data, &mut storages).map(|u| u.value)
    }

    #[test]
    fn memoized_strings_read_back_as_written() {
        // ("ab", "", "ab", "", "ab") with both strings memoized and fetched twice (the
        // non-empty one is kept in the memo as its byte range, the empty one as a value).
        let mut p = vec![op::PROTO, 2, op::MARK];
        p.extend([op::BINUNICODE, 2, 0, 0, 0, b'a', b'b', op::BINPUT, 0]);
        p.extend([op::BINUNICODE, 0, 0, 0, 0, op::BINPUT, 1]);
        p.extend([
            op::BINGET,
            0,
            op::BINGET,
            1,
            op::BINGET,
            0,
            op::TUPLE,
            op::STOP,
        ]);
        let IValue::Tuple(t) = read(&p).unwrap() else {
            panic!("not a tuple");
        };
        let texts: Vec<_> = t.items.iter().map(|v| format!("{v:?}")).collect();
        let ab = format!("{:?}", IValue::String(Str(Bytes::from_static(b"ab"))));
        let empty = format!("{:?}", IValue::String(Str(Bytes::new())));
        assert_eq!(texts, [&ab, &empty, &ab, &empty, &ab].map(String::as_str));
    }

    #[test]
    fn a_memo_entry_overwritten_by_a_string_is_the_string() {
        // [] memoized as 0, then "x" memoized as 0: BINGET 0 is "x".
        let mut p = vec![op::PROTO, 2, op::EMPTY_LIST, op::BINPUT, 0];
        p.extend([op::BINUNICODE, 1, 0, 0, 0, b'x', op::BINPUT, 0]);
        p.extend([op::BINGET, 0, op::TUPLE3, op::STOP]);
        let IValue::Tuple(t) = read(&p).unwrap() else {
            panic!("not a tuple");
        };
        assert_eq!(t.items.len(), 3);
        assert!(matches!(&t.items[0], IValue::List(_)));
        assert_eq!(t.items[2].kind_name(), "str");
        assert_eq!(format!("{:?}", t.items[1]), format!("{:?}", t.items[2]));
    }
}

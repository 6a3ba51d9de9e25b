//! Reading `PTMF` flatbuffers into the shared model. The buffer is verified (with
//! depth/table/apparent-size limits) before anything is touched; then every
//! cross-reference (ivalue, type, storage, operator, constant, register and jump
//! operands, union tags) is checked and an out-of-range one is an error naming the
//! field (`Module.ivalues[7].Object.type_index`) and, where known, its byte offset.
//!
//! Hostile input cannot panic, recurse without bound or allocate more than a small
//! multiple of its size: the value graph is walked with an explicit stack (children
//! before parents, `MAX_DEPTH` levels, cycles rejected), every ivalue is read once, and
//! every length comes from the verified buffer.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use flatbuffers::{ErrorTraceDetail, ForwardsUOffset, InvalidFlatbuffer, Vector, VerifierOptions};
use indexmap::IndexMap;

use super::generated::mobile_bytecode as fb;
use super::support;
use crate::error::{FormatError, rules};
use crate::model::bytecode::{
    Arg, BytecodeFunction, FunctionSchema, Instruction, ModuleInfo, OpCode, Operator,
};
use crate::model::{
    CompilationUnit, Device, Dict, Dims, EnumValue, IValue, List, Object, ObjectState, QScheme,
    QualifiedName, Quantization, ScalarType, ScriptModule, SourceFile, Storage, Str, Tensor, Tuple,
    TypeExpr,
};

/// The identifier at bytes 4..8 of every mobile flatbuffer.
pub const IDENTIFIER: &[u8; 4] = b"PTMF";

/// Deepest nesting of references accepted (as for pickles): values inside values,
/// and `__setstate__` functions with their constants and default values.
const MAX_DEPTH: u32 = 1000;

/// Whether `data` is a mobile flatbuffer (PyTorch's test: `PTMF` at offset 4).
pub fn is_flatbuffer(data: &[u8]) -> bool {
    data.len() >= 8 && &data[4..8] == IDENTIFIER
}

/// The `TypeType` of an `ObjectType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// `UNSET`: read like `CLASS_WITH_FIELD` (also what unknown values become).
    Unset,
    /// `CLASS_WITH_FIELD`: the object's `attrs` are its attributes, named by `attr_names`.
    ClassWithField,
    /// `CUSTOM_CLASS`: a TorchBind object; its `state` goes to the C++ class's
    /// `__setstate__`.
    CustomClass,
    /// `CLASS_WITH_SETSTATE`: the object's `state` goes to its `setstate_func`.
    ClassWithSetstate,
    /// `NON_OBJ`: not an object type; objects of it are refused.
    NonObj,
}

/// One entry of `Module.object_types`: a class as the flatbuffer's objects refer to it.
#[derive(Clone, Debug)]
pub struct ObjectTypeInfo {
    /// `ObjectType.type_name`: the qualified class name.
    pub type_name: String,
    /// `ObjectType.type`: how objects of this type hold their state.
    pub kind: ObjectKind,
    /// `ObjectType.attr_names`: attribute names in slot order (for `CLASS_WITH_FIELD`).
    pub attr_names: Vec<String>,
}

/// A mobile module as read from a flatbuffer.
#[derive(Clone, Debug)]
pub struct MobileModule {
    /// The module in the shared model: root object, the types of `jit_sources`, tensor
    /// constants (`jit_constants`), and all extra files.
    pub module: ScriptModule,
    /// `Module.bytecode_version`.
    pub bytecode_version: u32,
    /// `Module.operator_version`.
    pub operator_version: u32,
    /// The root module's methods, in method order.
    pub methods: Vec<Arc<BytecodeFunction>>,
    /// Every function among the mobile ivalues (what module info reports on).
    pub functions: Vec<Arc<BytecodeFunction>>,
    /// `Module.object_types`, in file order (what `Object.type_index` indexes).
    pub object_types: Vec<ObjectTypeInfo>,
    /// Extra files in file order.
    pub extra_files: Vec<(String, Bytes)>,
    /// `(qualifier, source)` in file order.
    pub jit_sources: Vec<(String, String)>,
    /// `Module.mobile_ivalue_size`: how many of the leading `ivalues` are the mobile
    /// module's (0: all of them).
    pub mobile_ivalue_size: u32,
    /// Number of `Module.storage_data` entries.
    pub storage_count: usize,
}

impl MobileModule {
    /// What PyTorch's `get_flatbuffer_module_info` reports for this file.
    pub fn module_info(&self) -> ModuleInfo {
        ModuleInfo::new(
            self.bytecode_version,
            self.operator_version,
            self.functions.iter().map(|f| f.as_ref()),
        )
    }
}

/// `Module.ivalues[N]`, formatted only when an error names it.
#[derive(Clone, Copy)]
struct IvaluePath(u32);

impl std::fmt::Display for IvaluePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Module.ivalues[{}]", self.0)
    }
}

/// A `flatbuffer` error about `field` (a path such as `Module.ivalues[3].Tuple.items`).
pub fn field_error(field: impl Into<String>, message: impl Into<String>) -> FormatError {
    FormatError::new(rules::FLATBUFFER, field, None, message)
}

use field_error as err;

/// Verifier limits: generous for real models, bounded for hostile ones.
///
/// The apparent size (bytes verified, counting a shared table or string once per
/// reference) also bounds what the reader allocates: names and strings are copied per
/// reference. PyTorch's files stay below twice their length (the sharing is small
/// strings), so eight times with a 64 MiB floor rejects only amplification: e.g. one
/// 1 MiB string named by 10^5 `attr_names` entries would be 100 GiB of verification
/// and copies.
/// A `flatbuffer-identifier` error: the bytes at offset 4 are not `PTMF` where a
/// flatbuffer is required; `message` says what the file is instead.
pub fn identifier_error(message: impl Into<String>) -> FormatError {
    FormatError::new(rules::FLATBUFFER_IDENTIFIER, "identifier", Some(4), message)
}

/// The whole buffer checked by the flatbuffers verifier under [`verifier_options`], the
/// root `Module` table on success. Every reader of a whole flatbuffer (load, module info,
/// extra files, `dump`) verifies through here, so one set of limits applies.
pub fn verified_module(buf: &[u8]) -> Result<fb::Module<'_>, FormatError> {
    fb::root_as_module_with_opts(&verifier_options(buf.len()), buf)
        .map_err(|e| verify_error(e, buf.len()))
}

/// The verifier's limits (the README's): generous for real models, bounded for hostile
/// ones.
pub fn verifier_options(len: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: 64,
        max_tables: (len / 4).max(1024),
        max_apparent_size: len.saturating_mul(8).max(1 << 26),
        ignore_missing_null_terminator: false,
    }
}

/// The table limit of PyTorch's flatbuffers verifier: flatbuffers' C++ default
/// `max_tables`, which PyTorch's loaders do not change.
pub const PYTORCH_MAX_TABLES: usize = 1_000_000;

/// `flatbuffer-verifier`, for `check`, when PyTorch 2.15's verifier refuses a buffer
/// ptconform's readers accept: more than [`PYTORCH_MAX_TABLES`] tables (PyTorch:
/// "Malformed Flatbuffer module"). ptconform's own limit grows with the buffer
/// ([`verifier_options`]), so loads stay permissive and bounded; only `check` applies
/// PyTorch's.
pub fn pytorch_verifier_finding(buf: &[u8]) -> Option<FormatError> {
    // A table is at least 4 bytes (its vtable offset): smaller buffers cannot exceed it.
    if buf.len() / 4 <= PYTORCH_MAX_TABLES {
        return None;
    }
    let opts = VerifierOptions {
        max_tables: PYTORCH_MAX_TABLES,
        ..verifier_options(buf.len())
    };
    match fb::root_as_module_with_opts(&opts, buf) {
        Err(InvalidFlatbuffer::TooManyTables) => Some(FormatError::new(
            rules::FLATBUFFER_VERIFIER,
            "Module",
            None,
            "more than 1,000,000 tables: PyTorch's flatbuffers verifier (its default max_tables) refuses the file (\"Malformed Flatbuffer module\")",
        )),
        _ => None,
    }
}

/// A verifier error as a `FormatError` whose field is the path the verifier was on
/// (`Module.ivalues[7].Object.attrs`) and whose offset is where it failed.
fn verify_error(e: InvalidFlatbuffer, len: usize) -> FormatError {
    use InvalidFlatbuffer as I;
    let (trace, offset, what) = match &e {
        I::MissingRequiredField {
            required,
            error_trace,
        } => (
            Some(error_trace),
            None,
            format!("required field `{required}` is missing"),
        ),
        I::InconsistentUnion {
            field,
            field_type,
            error_trace,
        } => (
            Some(error_trace),
            None,
            format!("exactly one of the union tag `{field_type}` and value `{field}` is present"),
        ),
        I::Utf8Error {
            error,
            range,
            error_trace,
        } => (
            Some(error_trace),
            Some(range.start),
            format!(
                "string at {range:?} is not UTF-8: {error} (PyTorch 2.15 loads such strings; ptconform reads them as UTF-8)"
            ),
        ),
        I::MissingNullTerminator { range, error_trace } => (
            Some(error_trace),
            Some(range.start),
            format!("string at {range:?} is not NUL-terminated"),
        ),
        I::Unaligned {
            position,
            unaligned_type,
            error_trace,
        } => (
            Some(error_trace),
            Some(*position),
            format!("{unaligned_type} at offset {position} is misaligned"),
        ),
        I::RangeOutOfBounds { range, error_trace } => (
            Some(error_trace),
            Some(range.start),
            format!(
                "bytes {}..{} are outside the {len}-byte buffer",
                range.start, range.end
            ),
        ),
        I::SignedOffsetOutOfBounds {
            soffset,
            position,
            error_trace,
        } => (
            Some(error_trace),
            Some(*position),
            format!(
                "table at offset {position}: vtable offset {soffset} points outside the buffer"
            ),
        ),
        I::TooManyTables => (None, None, "too many tables (verifier limit)".to_string()),
        I::ApparentSizeTooLarge => (
            None,
            None,
            "apparent size too large (verifier limit)".to_string(),
        ),
        I::DepthLimitReached => (
            None,
            None,
            "tables nested too deeply (verifier limit)".to_string(),
        ),
    };
    let mut path = String::from("Module");
    let mut last_pos = None;
    if let Some(trace) = trace {
        let details: &[ErrorTraceDetail] = trace.as_ref();
        // Innermost first in the trace: walk it from the root down.
        let mut it = details.iter().rev().peekable();
        while let Some(d) = it.next() {
            match d {
                ErrorTraceDetail::TableField {
                    field_name,
                    position,
                } => {
                    last_pos = Some(*position);
                    // `val` followed by the variant reads better as the variant alone.
                    if matches!(it.peek(), Some(ErrorTraceDetail::UnionVariant { .. })) {
                        continue;
                    }
                    path.push('.');
                    path.push_str(field_name);
                }
                ErrorTraceDetail::VectorElement { index, position } => {
                    last_pos = Some(*position);
                    path.push_str(&format!("[{index}]"));
                }
                ErrorTraceDetail::UnionVariant { variant, position } => {
                    last_pos = Some(*position);
                    path.push('.');
                    path.push_str(variant.rsplit("::").next().unwrap_or(variant));
                }
            }
        }
    }
    let offset = offset.or(last_pos).map(|o| o as u64);
    FormatError::new(
        rules::FLATBUFFER_VERIFIER,
        path,
        offset,
        format!("flatbuffer verification failed: {what}"),
    )
}

/// A node of the value graph: an ivalue read as a value, or as a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Value(u32),
    Function(u32),
}

/// A reference inside `Module.ivalues[owner]`, rendered (only for an error) as
/// `Module.ivalues[owner]{path}[k]{suffix}`; `pos` is where the index is stored.
#[derive(Clone, Copy, Debug)]
struct Site {
    owner: u32,
    path: &'static str,
    k: Option<usize>,
    suffix: &'static str,
    pos: Option<usize>,
}

impl Site {
    fn at(owner: u32, path: &'static str, k: usize) -> Self {
        Site {
            owner,
            path,
            k: Some(k),
            suffix: "",
            pos: None,
        }
    }

    fn one(owner: u32, path: &'static str) -> Self {
        Site {
            owner,
            path,
            k: None,
            suffix: "",
            pos: None,
        }
    }

    fn with_pos(self, pos: Option<usize>) -> Self {
        Site { pos, ..self }
    }

    /// An error about this reference.
    fn error(&self, message: String) -> FormatError {
        FormatError::new(
            rules::FLATBUFFER,
            self.render(),
            self.pos.map(|p| p as u64),
            message,
        )
    }

    fn render(&self) -> String {
        match self.k {
            Some(k) => format!(
                "Module.ivalues[{}]{}[{k}]{}",
                self.owner, self.path, self.suffix
            ),
            None => format!("Module.ivalues[{}]{}{}", self.owner, self.path, self.suffix),
        }
    }
}

/// One node being read: its children are read first (iteratively, so hostile nesting
/// cannot exhaust the native stack), then the node itself.
struct Frame {
    node: Node,
    /// The reference that led here; `None` for the walk's starting point.
    via: Option<Site>,
    children: Vec<(Node, Site)>,
    next: usize,
}

struct Reader<'a> {
    buf: &'a Bytes,
    ivalues: Vector<'a, ForwardsUOffset<fb::IValue<'a>>>,
    object_types: Vec<ObjectTypeInfo>,
    storage_data: Option<Vector<'a, ForwardsUOffset<fb::StorageData<'a>>>>,
    values: Vec<Option<IValue>>,
    value_active: Vec<bool>,
    functions: HashMap<u32, Arc<BytecodeFunction>>,
    function_active: Vec<bool>,
    storages: rustc_hash::FxHashMap<(u32, ScalarType), Arc<Storage>>,
    map_location: Option<Device>,
}

/// Reads a mobile flatbuffer. `buf` is shared: tensor storages borrow from it.
pub fn read_flatbuffer(
    buf: &Bytes,
    map_location: Option<Device>,
) -> Result<MobileModule, FormatError> {
    if !is_flatbuffer(buf) {
        return Err(identifier_error(
            "bytes 4..8 are not \"PTMF\": not a mobile flatbuffer",
        ));
    }
    let opts = verifier_options(buf.len());
    // The verification is split in two (see `verify_part`): the values' part is checked
    // on the calling thread while, on rayon's pool, the rest is checked and then the code
    // parsed. Nothing is read before the part it lies in is verified. (The pool's threads
    // outlive the load: no thread starts per load, and the allocator's per-thread heaps
    // stay alive when the definitions are dropped.)
    let rest_verified = std::sync::OnceLock::new();
    let verify_rest = || verify_part(buf, &opts, Part::Rest);
    let mut parsed = None;
    let read = crate::parallel::in_place_scope(|scope| {
        if buf.len() >= PARALLEL_VERIFY_BYTES {
            scope.spawn(|| {
                if rest_verified.get_or_init(verify_rest).is_ok() {
                    // SAFETY: the root table and `jit_sources` are verified (`Part::Rest`).
                    let m = unsafe { fb::root_as_module_unchecked(buf) };
                    if source_bytes(&m) >= PARALLEL_SOURCE_BYTES {
                        parsed = Some(parse_jit_sources(buf, &m));
                    }
                }
            });
        }
        verify_part(buf, &opts, Part::Values)?;
        rest_verified.get_or_init(verify_rest).clone()?;
        // SAFETY: both parts together verify all that `root_as_module_with_opts` does.
        let m = unsafe { fb::root_as_module_unchecked(buf) };
        read_module_values(buf, &m, map_location)
    });
    // A panic on the pool is re-raised by the scope (a bug to surface: fuzzers must see
    // it), not turned into an input error.
    let read = read?;
    // SAFETY: as above (`read` is an error unless both parts were verified).
    let m = unsafe { fb::root_as_module_unchecked(buf) };
    let (jit_sources, cu) = match parsed {
        Some(p) => p?,
        None => parse_jit_sources(buf, &m)?,
    };
    let module = ScriptModule {
        root: read.root,
        cu: Arc::new(cu),
        constants: read.constants,
        extra_files: read.extra_files.iter().cloned().collect::<IndexMap<_, _>>(),
        memoized: None,
    };
    Ok(MobileModule {
        module,
        bytecode_version: m.bytecode_version(),
        operator_version: m.operator_version(),
        methods: read.methods,
        functions: read.functions,
        object_types: read.object_types,
        extra_files: read.extra_files,
        jit_sources,
        mobile_ivalue_size: read.mobile_ivalue_size,
        storage_count: read.storage_count,
    })
}

/// What `read_values` read of a verified module (everything but the code).
struct ReadValues {
    root: Arc<Object>,
    constants: Vec<IValue>,
    methods: Vec<Arc<BytecodeFunction>>,
    functions: Vec<Arc<BytecodeFunction>>,
    object_types: Vec<ObjectTypeInfo>,
    extra_files: Vec<(String, Bytes)>,
    mobile_ivalue_size: u32,
    storage_count: usize,
}

/// The two halves of the module's verification: the fields up to `ivalues`, and the
/// rest. Together they check what `root_as_module_with_opts` checks, in the same order:
/// a module failing both is refused with the first part's error, as the one-pass
/// verifier would. Each part has the whole budget of tables and apparent size (so at
/// most twice one pass's, still bounded by the input size).
#[derive(Clone, Copy)]
enum Part {
    Values,
    Rest,
}

fn verify_part(buf: &[u8], opts: &VerifierOptions, part: Part) -> Result<(), FormatError> {
    use fb::Module as M;
    use flatbuffers::Verifier;
    type Table<'a, T> = ForwardsUOffset<Vector<'a, ForwardsUOffset<T>>>;
    type Indices<'a> = ForwardsUOffset<Vector<'a, u32>>;
    let run = || -> Result<(), InvalidFlatbuffer> {
        let mut v = Verifier::new(opts, buf);
        let root = v.get_uoffset(0)? as usize;
        let t = v.visit_table(root)?;
        match part {
            Part::Values => {
                t.visit_field::<u32>("bytecode_version", M::VT_BYTECODE_VERSION, false)?
                    .visit_field::<Table<fb::ExtraFile>>("extra_files", M::VT_EXTRA_FILES, false)?
                    .visit_field::<Indices>("methods", M::VT_METHODS, false)?
                    .visit_field::<u32>("state_obj", M::VT_STATE_OBJ, false)?
                    .visit_field::<Table<fb::IValue>>("ivalues", M::VT_IVALUES, false)?
                    .finish();
            }
            Part::Rest => {
                t.visit_field::<i32>("storage_data_size", M::VT_STORAGE_DATA_SIZE, false)?
                    .visit_field::<Table<fb::StorageData>>(
                        "storage_data",
                        M::VT_STORAGE_DATA,
                        false,
                    )?
                    .visit_field::<Table<fb::ObjectType>>(
                        "object_types",
                        M::VT_OBJECT_TYPES,
                        false,
                    )?
                    .visit_field::<Table<fb::ExtraFile>>("jit_sources", M::VT_JIT_SOURCES, false)?
                    .visit_field::<Indices>("jit_constants", M::VT_JIT_CONSTANTS, false)?
                    .visit_field::<u32>("operator_version", M::VT_OPERATOR_VERSION, false)?
                    .visit_field::<u32>("mobile_ivalue_size", M::VT_MOBILE_IVALUE_SIZE, false)?
                    .finish();
            }
        }
        Ok(())
    };
    run().map_err(|e| verify_error(e, buf.len()))
}

fn source_bytes(m: &fb::Module) -> usize {
    m.jit_sources()
        .into_iter()
        .flatten()
        .map(|f| f.content().map_or(0, |c| c.len()))
        .sum()
}

/// Checks what the generated verifier leaves out (union tags, struct members, object
/// type kinds), then reads the values.
fn read_module_values<'b>(
    buf: &'b Bytes,
    m: &fb::Module<'b>,
    map_location: Option<Device>,
) -> Result<ReadValues, FormatError> {
    let ivalues = m
        .ivalues()
        .ok_or_else(|| err("Module.ivalues", "missing"))?;
    // The generated verifier accepts unknown union tags and does not look inside the
    // struct members of the union: check both here, before any value is read.
    for (i, iv) in ivalues.iter().enumerate() {
        support::check_ivalue_union(buf, &iv).map_err(|e| {
            // An unknown tag is the tag's fault; a bad struct member is the value's.
            let part = if iv.val_type().0 > fb::IValueUnion::ENUM_MAX {
                "val_type"
            } else {
                "val"
            };
            FormatError::new(
                rules::FLATBUFFER,
                format!("Module.ivalues[{i}].{part}"),
                Some(iv._tab.loc() as u64),
                e,
            )
        })?;
    }
    let object_types: Vec<ObjectTypeInfo> = m
        .object_types()
        .map(|v| {
            v.iter()
                .map(|t| ObjectTypeInfo {
                    type_name: t.type_name().unwrap_or("").to_string(),
                    kind: match t.type_().0 {
                        1 => ObjectKind::ClassWithField,
                        2 => ObjectKind::CustomClass,
                        3 => ObjectKind::ClassWithSetstate,
                        4 => ObjectKind::NonObj,
                        _ => ObjectKind::Unset,
                    },
                    attr_names: t
                        .attr_names()
                        .map(|n| n.iter().map(str::to_string).collect())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(v) = m.object_types() {
        for (k, t) in v.iter().enumerate() {
            if t.type_().0 > 4 {
                return Err(err(
                    format!("Module.object_types[{k}].type"),
                    format!(
                        "unknown TypeType {} (the schema defines 0..=4)",
                        t.type_().0
                    ),
                ));
            }
        }
    }
    read_values(buf, m, ivalues, object_types, map_location)
}

/// Reads every ivalue, function and extra file of a verified module.
fn read_values<'b>(
    buf: &'b Bytes,
    m: &fb::Module<'b>,
    ivalues: Vector<'b, ForwardsUOffset<fb::IValue<'b>>>,
    object_types: Vec<ObjectTypeInfo>,
    map_location: Option<Device>,
) -> Result<ReadValues, FormatError> {
    // Every length below comes from the verified buffer: each ivalue is at least a
    // 4-byte offset in it, so these allocations are bounded by the input size.
    let n = ivalues.len();
    let mut r = Reader {
        buf,
        ivalues,
        object_types,
        storage_data: m.storage_data(),
        values: vec![None; n],
        value_active: vec![false; n],
        functions: HashMap::new(),
        function_active: vec![false; n],
        storages: Default::default(),
        map_location,
    };
    let mobile_ivalue_size = m.mobile_ivalue_size();
    if mobile_ivalue_size as usize > n {
        return Err(err(
            "Module.mobile_ivalue_size",
            format!("{mobile_ivalue_size} is larger than the {n} ivalues"),
        ));
    }
    let storage_count = r.storage_data.map_or(0, |s| s.len());
    if m.storage_data_size() as i64 != storage_count as i64 {
        return Err(err(
            "Module.storage_data_size",
            format!(
                "says {} but storage_data has {storage_count} entries",
                m.storage_data_size()
            ),
        ));
    }
    let mut methods = Vec::new();
    if let Some(v) = m.methods() {
        for (k, idx) in v.iter().enumerate() {
            methods.push(r.function(idx, &format!("Module.methods[{k}]"))?);
        }
    }
    // Every function among the mobile ivalues (methods of submodules' classes too).
    let mut functions = Vec::new();
    let limit = if mobile_ivalue_size == 0 {
        n as u32
    } else {
        mobile_ivalue_size
    };
    for i in 0..limit {
        if r.ivalues.get(i as usize).val_type() == fb::IValueUnion::Function {
            functions.push(r.function(i, &format!("Module.ivalues[{i}]"))?);
        }
    }
    let root = match r.value(m.state_obj(), "Module.state_obj")? {
        IValue::Object(o) => o,
        other => {
            return Err(err(
                "Module.state_obj",
                format!(
                    "ivalue {} is a {}, not an object",
                    m.state_obj(),
                    other.kind_name()
                ),
            ));
        }
    };
    let mut constants = Vec::new();
    if let Some(v) = m.jit_constants() {
        for (k, idx) in v.iter().enumerate() {
            constants.push(r.value(idx, &format!("Module.jit_constants[{k}]"))?);
        }
    }
    // PyTorch's loader parses every ivalue, referenced or not: so do we, so that a
    // broken one is reported even when nothing points at it.
    for i in 0..n as u32 {
        let is_function = r.ivalues.get(i as usize).val_type() == fb::IValueUnion::Function;
        let done = if is_function {
            r.functions.contains_key(&i)
        } else {
            matches!(r.values.get(i as usize), Some(Some(_)))
        };
        if done {
            continue;
        }
        let field = format!("Module.ivalues[{i}]");
        if is_function {
            r.function(i, &field)?;
        } else {
            r.value(i, &field)?;
        }
    }
    let extra_files = pairs(buf, m.extra_files(), "Module.extra_files")?;
    Ok(ReadValues {
        root,
        constants,
        methods,
        functions,
        object_types: r.object_types,
        extra_files,
        mobile_ivalue_size,
        storage_count,
    })
}

/// Sources code files above this many bytes in total are parsed on a second thread while
/// the ivalues are read.
const PARALLEL_SOURCE_BYTES: usize = 32 << 10;
/// Buffers above this many bytes are verified in two parts on two threads (below, the
/// second thread's start would cost more than it saves).
const PARALLEL_VERIFY_BYTES: usize = 64 << 10;

/// `jit_sources` as (qualifier, text) pairs and the declarations they define.
fn parse_jit_sources(
    buf: &Bytes,
    m: &fb::Module,
) -> Result<(Vec<(String, String)>, CompilationUnit), FormatError> {
    let jit_sources = pairs(buf, m.jit_sources(), "Module.jit_sources")?
        .into_iter()
        .enumerate()
        .map(|(k, (q, text))| match String::from_utf8(text.to_vec()) {
            Ok(text) => Ok((q, text)),
            Err(e) => Err(err(
                format!("Module.jit_sources[{k}].content"),
                format!(
                    "source text is not UTF-8: {e} (PyTorch 2.15 loads the file; ptconform reads sources as UTF-8)"
                ),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut cu = CompilationUnit::new();
    for (k, (qualifier, text)) in jit_sources.iter().enumerate() {
        let defs = crate::code::parse_record(
            format!("Module.jit_sources[{k}] ({qualifier})"),
            qualifier,
            text,
        )?;
        let names = defs.iter().map(|d| d.name().clone()).collect();
        for d in defs {
            cu.define_in(d, format!("Module.jit_sources[{k}]"))?;
        }
        cu.files.push(SourceFile {
            qualifier: qualifier.clone(),
            text: text.clone(),
            debug_pkl: None,
            definitions: names,
        });
    }
    Ok((jit_sources, cu))
}

/// `(name, content)` of an `ExtraFile` vector; contents borrow from `buf`.
fn pairs(
    buf: &Bytes,
    v: Option<Vector<'_, ForwardsUOffset<fb::ExtraFile<'_>>>>,
    field: &str,
) -> Result<Vec<(String, Bytes)>, FormatError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    v.iter()
        .enumerate()
        .map(|(i, f)| {
            let name = f
                .name()
                .ok_or_else(|| err(format!("{field}[{i}].name"), "missing"))?;
            let content = match f.content() {
                None => Bytes::new(),
                Some(c) => {
                    // The vector and its length word lie inside `buf` (verified), even
                    // when it is empty.
                    let bytes = c.bytes();
                    let start = (bytes.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
                    let end = start.saturating_add(bytes.len());
                    if end > buf.len() {
                        return Err(err(
                            format!("{field}[{i}].content"),
                            "content lies outside the buffer",
                        ));
                    }
                    // `content` is a flatbuffer string: PyTorch's verifier requires the
                    // terminating NUL that ours (reading it as bytes) does not check.
                    if buf.get(end) != Some(&0) {
                        return Err(err(
                            format!("{field}[{i}].content"),
                            format!("string at offset {start} is not NUL-terminated"),
                        ));
                    }
                    buf.slice(start..end)
                }
            };
            Ok((name.to_string(), content))
        })
        .collect()
}

/// What led to a node: the top-level field the caller named, or a reference inside
/// another ivalue.
#[derive(Clone, Copy)]
enum Via<'f> {
    Top(&'f str),
    Ref(Site),
}

impl Via<'_> {
    fn render(&self) -> String {
        match self {
            Via::Top(f) => f.to_string(),
            Via::Ref(s) => s.render(),
        }
    }

    fn offset(&self) -> Option<u64> {
        match self {
            Via::Top(_) => None,
            Via::Ref(s) => s.pos.map(|p| p as u64),
        }
    }

    fn error(&self, message: String) -> FormatError {
        FormatError::new(rules::FLATBUFFER, self.render(), self.offset(), message)
    }
}

/// Byte position of a present table field.
fn field_pos(tab: &flatbuffers::Table<'_>, voffset: flatbuffers::VOffsetT) -> Option<usize> {
    match tab.vtable().get(voffset) {
        0 => None,
        o => Some(tab.loc() + o as usize),
    }
}

fn node_index(n: Node) -> u32 {
    match n {
        Node::Value(i) | Node::Function(i) => i,
    }
}

impl<'a> Reader<'a> {
    fn ivalue(&self, idx: u32, field: &str) -> Result<fb::IValue<'a>, FormatError> {
        if (idx as usize) >= self.ivalues.len() {
            return Err(err(
                field,
                format!(
                    "ivalue index {idx} is out of range (there are {})",
                    self.ivalues.len()
                ),
            )
            .with_rule(rules::FLATBUFFER_INDEX));
        }
        Ok(self.ivalues.get(idx as usize))
    }

    /// The value of ivalue `idx`, reached through `field`.
    fn value(&mut self, idx: u32, field: &str) -> Result<IValue, FormatError> {
        if let Some(Some(v)) = self.values.get(idx as usize) {
            return Ok(v.clone());
        }
        self.walk(Node::Value(idx), field)?;
        match self.values.get(idx as usize) {
            Some(Some(v)) => Ok(v.clone()),
            _ => Err(err(field, format!("ivalue {idx} could not be read"))),
        }
    }

    /// The function at ivalue `idx`, reached through `field`.
    fn function(&mut self, idx: u32, field: &str) -> Result<Arc<BytecodeFunction>, FormatError> {
        if let Some(f) = self.functions.get(&idx) {
            return Ok(f.clone());
        }
        self.walk(Node::Function(idx), field)?;
        self.functions.get(&idx).cloned().ok_or_else(|| {
            err(
                field,
                format!("ivalue {idx} could not be read as a function"),
            )
        })
    }

    /// A child's value while converting its parent: `walk` has read it already.
    fn child(&mut self, idx: u32, site: Site) -> Result<IValue, FormatError> {
        match self.values.get(idx as usize) {
            Some(Some(v)) => Ok(v.clone()),
            _ => self.value(idx, &site.render()),
        }
    }

    fn child_function(
        &mut self,
        idx: u32,
        site: Site,
    ) -> Result<Arc<BytecodeFunction>, FormatError> {
        match self.functions.get(&idx) {
            Some(f) => Ok(f.clone()),
            None => self.function(idx, &site.render()),
        }
    }

    fn is_done(&self, n: Node) -> bool {
        match n {
            Node::Value(i) => matches!(self.values.get(i as usize), Some(Some(_))),
            Node::Function(i) => self.functions.contains_key(&i),
        }
    }

    fn active(&mut self, n: Node) -> Option<&mut bool> {
        match n {
            Node::Value(i) => self.value_active.get_mut(i as usize),
            Node::Function(i) => self.function_active.get_mut(i as usize),
        }
    }

    /// The ivalues `n` refers to, with where each reference is. Nothing is checked
    /// here; a node whose table is unusable has no children and `finish` reports it.
    fn children(&self, n: Node) -> Vec<(Node, Site)> {
        let i = node_index(n);
        let iv = self.ivalues.get(i as usize);
        let base = self.buf.as_ptr() as usize;
        let mut out = Vec::new();
        let mut add = |v: Option<Vector<'a, u32>>, path: &'static str| {
            if let Some(v) = v {
                let start = (v.bytes().as_ptr() as usize).wrapping_sub(base);
                out.extend(v.iter().enumerate().map(|(k, c)| {
                    (
                        Node::Value(c),
                        Site::at(i, path, k).with_pos(Some(start.wrapping_add(4 * k))),
                    )
                }));
            }
        };
        use fb::IValueUnion as U;
        match n {
            Node::Value(_) => match iv.val_type() {
                U::List => add(iv.val_as_list().and_then(|l| l.items()), ".List.items"),
                U::Tuple => add(iv.val_as_tuple().and_then(|t| t.items()), ".Tuple.items"),
                U::Dict => {
                    if let Some(d) = iv.val_as_dict() {
                        add(d.keys(), ".Dict.keys");
                        add(d.values(), ".Dict.values");
                    }
                }
                U::EnumValue => {
                    if let Some(e) = iv.val_as_enum_value() {
                        out.push((
                            Node::Value(e.value()),
                            Site::one(i, ".EnumValue.value")
                                .with_pos(field_pos(&e._tab, fb::EnumValue::VT_VALUE)),
                        ));
                    }
                }
                U::Object => {
                    if let Some(o) = iv.val_as_object() {
                        match self
                            .object_types
                            .get(o.type_index() as usize)
                            .map(|t| t.kind)
                        {
                            Some(ObjectKind::ClassWithField | ObjectKind::Unset) => {
                                add(o.attrs(), ".Object.attrs")
                            }
                            Some(ObjectKind::ClassWithSetstate) => {
                                out.push((
                                    Node::Function(o.setstate_func()),
                                    Site::one(i, ".Object.setstate_func")
                                        .with_pos(field_pos(&o._tab, fb::Object::VT_SETSTATE_FUNC)),
                                ));
                                out.push((
                                    Node::Value(o.state()),
                                    Site::one(i, ".Object.state")
                                        .with_pos(field_pos(&o._tab, fb::Object::VT_STATE)),
                                ));
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            },
            Node::Function(_) => {
                if let Some(f) = iv.val_as_function() {
                    add(f.constants(), ".Function.constants");
                    if let Some(s) = f.schema() {
                        for (path, args) in [
                            (".Function.schema.arguments", s.arguments()),
                            (".Function.schema.returns", s.returns()),
                        ] {
                            for (k, a) in args.iter().flat_map(|v| v.iter()).enumerate() {
                                if a.default_value() != 0 {
                                    out.push((
                                        Node::Value(a.default_value()),
                                        Site {
                                            owner: i,
                                            path,
                                            k: Some(k),
                                            suffix: ".default_value",
                                            pos: field_pos(&a._tab, fb::Arg::VT_DEFAULT_VALUE),
                                        },
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Reads `start` and everything it refers to, children before parents. The walk
    /// keeps its own stack (bounded by `MAX_DEPTH`), so hostile nesting can neither
    /// overflow the native stack nor loop: a reference back to a node still being read
    /// is a cycle.
    fn walk(&mut self, start: Node, field: &str) -> Result<(), FormatError> {
        let n = self.ivalues.len();
        self.ivalue(node_index(start), field)?;
        if self.is_done(start) {
            return Ok(());
        }
        let mut stack: Vec<Frame> = Vec::new();
        let mut pending = Some((start, None::<Site>));
        loop {
            if let Some((node, via)) = pending.take() {
                let idx = node_index(node);
                let fail = |msg: String| match via {
                    Some(s) => s.error(msg),
                    None => err(field, msg),
                };
                if idx as usize >= n {
                    return Err(fail(format!(
                        "ivalue index {idx} is out of range (there are {n})"
                    ))
                    .with_rule(rules::FLATBUFFER_INDEX));
                }
                if !self.is_done(node) {
                    match self.active(node) {
                        Some(true) => {
                            return Err(fail(format!(
                                "ivalue {idx} contains itself (a reference cycle: PyTorch 2.15 loads the file, ptconform's model holds no cycles)"
                            )));
                        }
                        Some(a) => *a = true,
                        None => {
                            return Err(fail(format!("ivalue index {idx} is out of range"))
                                .with_rule(rules::FLATBUFFER_INDEX));
                        }
                    }
                    if stack.len() >= MAX_DEPTH as usize {
                        return Err(fail(format!(
                            "values nested deeper than {MAX_DEPTH} levels"
                        )));
                    }
                    let children = self.children(node);
                    stack.push(Frame {
                        node,
                        via,
                        children,
                        next: 0,
                    });
                }
            }
            let Some(top) = stack.last_mut() else {
                return Ok(());
            };
            if let Some(&(child, site)) = top.children.get(top.next) {
                top.next += 1;
                pending = Some((child, Some(site)));
                continue;
            }
            let Some(frame) = stack.pop() else {
                return Ok(());
            };
            let via = frame.via.map_or(Via::Top(field), Via::Ref);
            let idx = node_index(frame.node);
            match frame.node {
                Node::Value(_) => {
                    let iv = self.ivalues.get(idx as usize);
                    let v = self.convert(&iv, idx, via)?;
                    if let Some(slot) = self.values.get_mut(idx as usize) {
                        *slot = Some(v);
                    }
                }
                Node::Function(_) => {
                    let f = self.read_function(idx, via)?;
                    self.functions.insert(idx, f);
                }
            }
            if let Some(a) = self.active(frame.node) {
                *a = false;
            }
        }
    }

    fn items(
        &mut self,
        v: Option<Vector<'a, u32>>,
        owner: u32,
        path: &'static str,
    ) -> Result<Vec<IValue>, FormatError> {
        let Some(v) = v else { return Ok(Vec::new()) };
        v.iter()
            .enumerate()
            .map(|(k, idx)| self.child(idx, Site::at(owner, path, k)))
            .collect()
    }

    /// Converts one ivalue whose children are already read.
    fn convert(
        &mut self,
        iv: &fb::IValue<'a>,
        idx: u32,
        via: Via<'_>,
    ) -> Result<IValue, FormatError> {
        let here = IvaluePath(idx);
        let at = Some(iv._tab.loc() as u64);
        let bad = |field: String, msg: String| FormatError::new(rules::FLATBUFFER, field, at, msg);
        use fb::IValueUnion as U;
        Ok(match iv.val_type() {
            U::NONE => IValue::None,
            U::Int => IValue::Int(
                support::read_int(iv)
                    .ok_or_else(|| bad(here.to_string(), "Int value missing".into()))?,
            ),
            U::Bool => IValue::Bool(
                support::read_bool(iv)
                    .ok_or_else(|| bad(here.to_string(), "Bool value missing".into()))?,
            ),
            U::Double => IValue::Double(
                support::read_double(iv)
                    .ok_or_else(|| bad(here.to_string(), "Double value missing".into()))?,
            ),
            U::ComplexDouble => {
                let (re, im) = support::read_complex(iv)
                    .ok_or_else(|| bad(here.to_string(), "ComplexDouble value missing".into()))?;
                IValue::Complex(re, im)
            }
            U::String => {
                let s = iv.val_as_string().and_then(|s| s.data()).unwrap_or("");
                IValue::String(Str::from(s))
            }
            U::Device => {
                let s = iv.val_as_device().and_then(|d| d.str()).unwrap_or("");
                IValue::Device(
                    Device::parse(s)
                        .map_err(|e| bad(format!("{here}.Device.str"), e.to_string()))?,
                )
            }
            U::IntList => {
                let items = iv
                    .val_as_int_list()
                    .and_then(|l| l.items())
                    .map(|v| {
                        v.iter()
                            .map(|b| IValue::Int(support::bytes8_i64(b)))
                            .collect()
                    })
                    .unwrap_or_default();
                typed_list("int", items)
            }
            U::DoubleList => {
                let items = iv
                    .val_as_double_list()
                    .and_then(|l| l.items())
                    .map(|v| {
                        v.iter()
                            .map(|b| IValue::Double(support::bytes8_f64(b)))
                            .collect()
                    })
                    .unwrap_or_default();
                typed_list("float", items)
            }
            U::BoolList => {
                let items = iv
                    .val_as_bool_list()
                    .and_then(|l| l.items())
                    .map(|v| v.iter().map(IValue::Bool).collect())
                    .unwrap_or_default();
                typed_list("bool", items)
            }
            U::List => {
                let l = iv
                    .val_as_list()
                    .ok_or_else(|| bad(here.to_string(), "List table missing".into()))?;
                let ann = l.annotation_str().unwrap_or("List[Any]");
                let ty = TypeExpr::parse(ann)
                    .map_err(|e| bad(format!("{here}.List.annotation_str"), e.to_string()))?;
                let elem = match (ty.head(), ty.args()) {
                    ("List", [e]) => e.clone(),
                    _ => {
                        return Err(bad(
                            format!("{here}.List.annotation_str"),
                            format!("{ann:?} is not a List type"),
                        ));
                    }
                };
                let items = self.items(l.items(), idx, ".List.items")?;
                IValue::List(Arc::new(List {
                    elem_type: elem,
                    items,
                }))
            }
            U::Tuple => {
                let t = iv
                    .val_as_tuple()
                    .ok_or_else(|| bad(here.to_string(), "Tuple table missing".into()))?;
                let items = self.items(t.items(), idx, ".Tuple.items")?;
                IValue::Tuple(Arc::new(Tuple { items, named: None }))
            }
            U::Dict => {
                let d = iv
                    .val_as_dict()
                    .ok_or_else(|| bad(here.to_string(), "Dict table missing".into()))?;
                let ann = d.annotation_str().unwrap_or("Dict[Any, Any]");
                let ty = TypeExpr::parse(ann)
                    .map_err(|e| bad(format!("{here}.Dict.annotation_str"), e.to_string()))?;
                let (k, v) = match (ty.head(), ty.args()) {
                    ("Dict", [k, v]) => (k.clone(), v.clone()),
                    _ => {
                        return Err(bad(
                            format!("{here}.Dict.annotation_str"),
                            format!("{ann:?} is not a Dict type"),
                        ));
                    }
                };
                let nk = d.keys().map_or(0, |v| v.len());
                let nv = d.values().map_or(0, |v| v.len());
                if nk != nv {
                    return Err(bad(
                        format!("{here}.Dict.values"),
                        format!("Dict has {nk} keys but {nv} values"),
                    ));
                }
                let keys = self.items(d.keys(), idx, ".Dict.keys")?;
                let values = self.items(d.values(), idx, ".Dict.values")?;
                IValue::Dict(Arc::new(Dict {
                    key_type: k,
                    value_type: v,
                    entries: keys.into_iter().zip(values).collect(),
                }))
            }
            U::Object => self.object(iv, idx, &here)?,
            U::EnumValue => {
                let e = iv
                    .val_as_enum_value()
                    .ok_or_else(|| bad(here.to_string(), "EnumValue table missing".into()))?;
                let name = e
                    .type_name()
                    .ok_or_else(|| bad(format!("{here}.EnumValue.type_name"), "missing".into()))?;
                let value = self.child(e.value(), Site::one(idx, ".EnumValue.value"))?;
                IValue::Enum(Arc::new(EnumValue {
                    enum_type: QualifiedName::new(name),
                    value,
                }))
            }
            U::TensorMetadata => {
                let t = iv
                    .val_as_tensor_metadata()
                    .ok_or_else(|| bad(here.to_string(), "TensorMetadata table missing".into()))?;
                IValue::Tensor(Arc::new(self.tensor(
                    &t,
                    &format_args!("{here}.TensorMetadata"),
                    0,
                )?))
            }
            U::Function => {
                return Err(via.error(format!(
                    "ivalue {idx} is a Function, used where a value is expected"
                )));
            }
            other => {
                return Err(bad(
                    format!("{here}.val_type"),
                    format!("unknown IValue union tag {}", other.0),
                ));
            }
        })
    }

    fn object(
        &mut self,
        iv: &fb::IValue<'a>,
        idx: u32,
        here: &IvaluePath,
    ) -> Result<IValue, FormatError> {
        let o = iv
            .val_as_object()
            .ok_or_else(|| err(here.to_string(), "Object table missing"))?;
        let at = Some(o._tab.loc() as u64);
        let ti = o.type_index() as usize;
        let ty = self.object_types.get(ti).cloned().ok_or_else(|| {
            FormatError::new(
                rules::FLATBUFFER_INDEX,
                format!("{here}.Object.type_index"),
                at,
                format!(
                    "{ti} is out of range ({} object types)",
                    self.object_types.len()
                ),
            )
        })?;
        let state = match ty.kind {
            ObjectKind::ClassWithField | ObjectKind::Unset => {
                let attrs = o.attrs();
                let count = attrs.map_or(0, |v| v.len());
                if count != ty.attr_names.len() {
                    return Err(super::object_types::attribute_count_mismatch(
                        format!("{here}.Object.attrs"),
                        at,
                        &ty,
                        count,
                    ));
                }
                let values = self.items(attrs, idx, ".Object.attrs")?;
                ObjectState::Attributes(
                    ty.attr_names
                        .iter()
                        .map(|name| Str::from(name.as_str()))
                        .zip(values)
                        .collect(),
                )
            }
            ObjectKind::ClassWithSetstate => {
                // The __setstate__ function must exist, the state is any value.
                self.child_function(o.setstate_func(), Site::one(idx, ".Object.setstate_func"))?;
                ObjectState::SetState(self.child(o.state(), Site::one(idx, ".Object.state"))?)
            }
            ObjectKind::CustomClass => {
                // A TorchBind object: PyTorch runs the C++ class's __setstate__ on the
                // state; there is no setstate function in the file.
                ObjectState::SetState(self.child(o.state(), Site::one(idx, ".Object.state"))?)
            }
            ObjectKind::NonObj => {
                return Err(FormatError::new(
                    rules::FLATBUFFER,
                    format!("{here}.Object.type_index"),
                    at,
                    format!(
                        "objects of kind {:?} ({}) are not supported",
                        ty.kind, ty.type_name
                    ),
                ));
            }
        };
        Ok(IValue::Object(Arc::new(Object {
            class: QualifiedName::new(ty.type_name.clone()),
            state,
        })))
    }

    fn storage(
        &mut self,
        index: u32,
        dtype: ScalarType,
        field: &dyn std::fmt::Display,
    ) -> Result<Arc<Storage>, FormatError> {
        let field = || field.to_string();
        if let Some(s) = self.storages.get(&(index, dtype)) {
            return Ok(s.clone());
        }
        let data = self.storage_data.ok_or_else(|| {
            err(
                field(),
                "tensor refers to storage data but Module.storage_data is missing",
            )
        })?;
        if index as usize >= data.len() {
            return Err(err(
                field(),
                format!(
                    "storage_location_index {index} is out of range ({} storages)",
                    data.len()
                ),
            )
            .with_rule(rules::FLATBUFFER_INDEX));
        }
        let bytes = data
            .get(index as usize)
            .data()
            .map(|v| v.bytes())
            .unwrap_or(&[]);
        // Zero-copy: the storage is a slice of the caller's buffer (the verifier
        // checked that the vector lies inside it; an empty one may point anywhere).
        let slice = if bytes.is_empty() {
            Bytes::new()
        } else {
            let start = (bytes.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
            let end = start.saturating_add(bytes.len());
            if end > self.buf.len() {
                return Err(err(field(), "storage bytes are outside the buffer"));
            }
            self.buf.slice(start..end)
        };
        let esize = dtype.element_size().max(1) as usize;
        let numel = (slice.len() / esize) as u64;
        let device = self.map_location.unwrap_or_else(Device::cpu);
        let s = Arc::new(Storage {
            dtype,
            device,
            numel,
            data: slice,
        });
        self.storages.insert((index, dtype), s.clone());
        Ok(s)
    }

    /// A tensor. `nesting` counts quantization parameter tensors (themselves bounded by
    /// the verifier's table depth).
    fn tensor(
        &mut self,
        t: &fb::TensorMetadata<'a>,
        // Formatted only on an error (5,000 tensors would otherwise format 15,000 paths).
        field: &dyn std::fmt::Display,
        nesting: u32,
    ) -> Result<Tensor, FormatError> {
        let at = Some(t._tab.loc() as u64);
        let bad = |f: String, msg: String| FormatError::new(rules::FLATBUFFER, f, at, msg);
        if nesting > 2 {
            return Err(bad(
                format!("{field}.quantized_schema"),
                "quantization parameter tensors are themselves quantized".into(),
            ));
        }
        let dtype = ScalarType::from_number(t.scalar_type() as i64).ok_or_else(|| {
            bad(
                format!("{field}.scalar_type"),
                format!("unknown scalar type {}", t.scalar_type()),
            )
        })?;
        let quantization = match t.quantized_schema() {
            None => None,
            Some(q) => {
                let scheme = usize::try_from(q.qscheme())
                    .ok()
                    .and_then(|i| QScheme::ALL.get(i))
                    .copied()
                    .ok_or_else(|| {
                        bad(
                            format!("{field}.quantized_schema.qscheme"),
                            format!("unknown qscheme {}", q.qscheme()),
                        )
                    })?;
                if scheme.is_per_channel() {
                    let scales = q.scales().ok_or_else(|| {
                        bad(format!("{field}.quantized_schema.scales"), "missing".into())
                    })?;
                    let zps = q.zero_points().ok_or_else(|| {
                        bad(
                            format!("{field}.quantized_schema.zero_points"),
                            "missing".into(),
                        )
                    })?;
                    Some(Quantization::PerChannel {
                        scheme,
                        scales: Arc::new(self.tensor(
                            &scales,
                            &format_args!("{field}.quantized_schema.scales"),
                            nesting + 1,
                        )?),
                        zero_points: Arc::new(self.tensor(
                            &zps,
                            &format_args!("{field}.quantized_schema.zero_points"),
                            nesting + 1,
                        )?),
                        axis: q.axis() as i64,
                    })
                } else {
                    Some(Quantization::PerTensor {
                        scheme,
                        scale: q.scale(),
                        zero_point: q.zero_point() as i64,
                    })
                }
            }
        };
        let storage = self.storage(
            t.storage_location_index(),
            dtype,
            &format_args!("{field}.storage_location_index"),
        )?;
        let sizes: Dims = t
            .sizes()
            .map(|v| v.iter().map(i64::from).collect())
            .unwrap_or_default();
        let strides: Dims = t
            .strides()
            .map(|v| v.iter().map(i64::from).collect())
            .unwrap_or_default();
        if sizes.len() != strides.len() {
            return Err(bad(
                format!("{field}.strides"),
                format!("{} sizes but {} strides", sizes.len(), strides.len()),
            ));
        }
        if let Some(k) = sizes.iter().position(|&s| s < 0) {
            return Err(bad(
                format!("{field}.sizes[{k}]"),
                format!("negative size {}", sizes[k]),
            ));
        }
        if let Some(k) = strides.iter().position(|&s| s < 0) {
            return Err(bad(
                format!("{field}.strides[{k}]"),
                format!(
                    "negative stride {} (PyTorch 2.15 loads the file; its writers never make one, and ptconform's model refuses it)",
                    strides[k]
                ),
            ));
        }
        if t.storage_offset() < 0 {
            return Err(bad(
                format!("{field}.storage_offset"),
                format!(
                    "negative storage offset {} (PyTorch 2.15 loads the file; ptconform's model refuses it)",
                    t.storage_offset()
                ),
            ));
        }
        let tensor = Tensor {
            storage,
            storage_offset: t.storage_offset() as i64,
            sizes,
            strides,
            requires_grad: t.requires_grad(),
            conj: false,
            neg: false,
            quantization,
            sparse: None,
        };
        tensor.check_view().map_err(|message| {
            crate::model::tensor::storage_error(
                format!("{field}.storage_location_index"),
                at,
                format!("storage {}: {message}", t.storage_location_index()),
            )
        })?;
        Ok(tensor)
    }

    /// Reads the Function at ivalue `idx` (its constants and default values are read
    /// already); `via` is the reference that asked for it.
    fn read_function(
        &mut self,
        idx: u32,
        via: Via<'_>,
    ) -> Result<Arc<BytecodeFunction>, FormatError> {
        let iv = self.ivalue(idx, &via.render())?;
        let here = format!("Module.ivalues[{idx}].Function");
        let f = iv.val_as_function().ok_or_else(|| {
            via.error(format!(
                "ivalue {idx} is not a Function (its tag is {})",
                iv.val_type().0
            ))
        })?;
        let at = Some(f._tab.loc() as u64);
        let bad = |field: String, msg: String| FormatError::new(rules::FLATBUFFER, field, at, msg);
        let qn = f
            .qn()
            .ok_or_else(|| bad(format!("{here}.qn"), "missing".into()))?
            .to_string();
        let operators: Vec<Operator> = f
            .operators()
            .map(|v| {
                v.iter()
                    .map(|o| Operator {
                        name: o.name().unwrap_or("").to_string(),
                        overload_name: o.overload_name().unwrap_or("").to_string(),
                        num_args: (o.num_args_serialized() != -1)
                            .then_some(o.num_args_serialized()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let constants = self.items(f.constants(), idx, ".Function.constants")?;
        let type_annotations: Vec<String> = f
            .type_annotations()
            .map(|v| v.iter().map(str::to_string).collect())
            .unwrap_or_default();
        let register_size = f.register_size();
        if register_size < 0 {
            return Err(bad(
                format!("{here}.register_size"),
                format!("negative register count {register_size}"),
            ));
        }
        let mut instructions = Vec::new();
        if let Some(v) = f.instructions() {
            let base = (v.bytes().as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
            let len = v.len() as i64;
            for (k, ins) in v.iter().enumerate() {
                let op = OpCode::from_number(ins.op() as i64).ok_or_else(|| {
                    FormatError::new(
                        rules::FLATBUFFER_OPCODE,
                        format!("{here}.instructions[{k}].op"),
                        Some(base.wrapping_add(8 * k) as u64),
                        format!("unknown opcode {}", ins.op()),
                    )
                })?;
                let (n, x) = (ins.n(), ins.x());
                check_instruction(
                    op,
                    n,
                    x,
                    k as i64,
                    len,
                    register_size,
                    &Counts {
                        operators: operators.len(),
                        constants: constants.len(),
                        types: type_annotations.len(),
                    },
                )
                .map_err(|(operand, what)| {
                    FormatError::new(
                        rules::FLATBUFFER_OPCODE,
                        format!("{here}.instructions[{k}].{operand}"),
                        Some(base.wrapping_add(8 * k) as u64),
                        format!("{} {what} (n = {n}, x = {x})", op.name()),
                    )
                })?;
                instructions.push(Instruction { op, n, x });
            }
        }
        let schema = match f.schema() {
            None => None,
            Some(s) => {
                let mut lists = Vec::new();
                for (path, v) in [
                    (".Function.schema.arguments", s.arguments()),
                    (".Function.schema.returns", s.returns()),
                ] {
                    let mut out = Vec::new();
                    for (k, a) in v.iter().flat_map(|v| v.iter()).enumerate() {
                        let dv = a.default_value();
                        let default_value = if dv == 0 {
                            None
                        } else {
                            Some(self.child(
                                dv,
                                Site {
                                    owner: idx,
                                    path,
                                    k: Some(k),
                                    suffix: ".default_value",
                                    pos: None,
                                },
                            )?)
                        };
                        out.push(Arg {
                            name: a.name().unwrap_or("").to_string(),
                            type_str: a.type_().unwrap_or("").to_string(),
                            default_value,
                        });
                    }
                    lists.push(out);
                }
                let returns = lists.pop().unwrap_or_default();
                let arguments = lists.pop().unwrap_or_default();
                Some(FunctionSchema { arguments, returns })
            }
        };
        let class_type = f.class_type();
        if class_type as usize >= self.object_types.len() {
            return Err(bad(
                format!("{here}.class_type"),
                format!(
                    "{class_type} is out of range ({} object types)",
                    self.object_types.len()
                ),
            )
            .with_rule(rules::FLATBUFFER_INDEX));
        }
        Ok(Arc::new(BytecodeFunction {
            qualified_name: QualifiedName::new(qn),
            instructions,
            operators,
            constants,
            type_annotations,
            register_size,
            schema,
            debug_handles: f
                .debug_info()
                .and_then(|d| d.debug_handle())
                .map(|v| v.iter().map(support::bytes8_i64).collect())
                .unwrap_or_default(),
            class_type,
        }))
    }
}

/// Sizes of the tables instruction operands index.
struct Counts {
    operators: usize,
    constants: usize,
    types: usize,
}

/// Checks one instruction's operands against what the mobile interpreter does with
/// them (spec §5): table indices in range, registers in `1..=register_size`, jump
/// targets inside the function, and the counts that the interpreter uses to reach
/// into its stack where a wrong value reads outside it. On failure: the operand
/// (`x` or `n`) and what is wrong.
fn check_instruction(
    op: OpCode,
    n: u16,
    x: i32,
    pc: i64,
    len: i64,
    register_size: i32,
    c: &Counts,
) -> Result<(), (&'static str, String)> {
    let index = |limit: usize, what: &str| {
        if x >= 0 && (x as usize) < limit {
            Ok(())
        } else {
            Err(("x", format!("{what} index out of range ({limit} {what}s)")))
        }
    };
    let (n64, x64) = (n as i64, x as i64);
    match op {
        OpCode::Op | OpCode::OpN => index(c.operators, "operator"),
        OpCode::LoadC => index(c.constants, "constant"),
        OpCode::Load | OpCode::Move | OpCode::Store | OpCode::DropR => {
            if x >= 1 && x <= register_size {
                Ok(())
            } else {
                Err((
                    "x",
                    format!("register out of range (register_size {register_size})"),
                ))
            }
        }
        OpCode::StoreN => {
            if x >= 1 && x64 + n64 - 1 <= register_size as i64 {
                Ok(())
            } else {
                Err((
                    "x",
                    format!("registers out of range (register_size {register_size})"),
                ))
            }
        }
        OpCode::Jf | OpCode::Jmp | OpCode::Loop => {
            let target = pc + x64;
            if !(0..len).contains(&target) {
                Err((
                    "x",
                    format!("jump target {target} is outside the function ({len} instructions)"),
                ))
            } else if op == OpCode::Loop && n < 2 {
                // The interpreter reads the trip count, max trip count and condition
                // and computes `n - 2` loop-carried values.
                Err(("n", "loop needs at least 2 inputs".to_string()))
            } else {
                Ok(())
            }
        }
        OpCode::ListConstruct | OpCode::NamedTupleConstruct | OpCode::CreateObject => {
            index(c.types, "type annotation")
        }
        OpCode::DictConstruct => {
            index(c.types, "type annotation")?;
            if n.is_multiple_of(2) {
                Ok(())
            } else {
                Err(("n", "odd number of inputs (key/value pairs)".to_string()))
            }
        }
        OpCode::IsInstance => {
            if x >= 0 && x64 + n64 <= c.types as i64 {
                Ok(())
            } else {
                Err((
                    "x",
                    format!("types out of range ({} type annotations)", c.types),
                ))
            }
        }
        OpCode::InterfaceCall => {
            index(c.constants, "constant")?;
            if n >= 1 {
                Ok(())
            } else {
                Err((
                    "n",
                    "interface call without inputs (needs self)".to_string(),
                ))
            }
        }
        OpCode::Format => {
            if x >= 1 {
                Ok(())
            } else {
                Err(("x", "format needs at least its format string".to_string()))
            }
        }
        OpCode::TupleConstruct
        | OpCode::TupleSlice
        | OpCode::ListUnpack
        | OpCode::GetAttr
        | OpCode::SetAttr => {
            if x >= 0 {
                Ok(())
            } else {
                Err(("x", "negative operand".to_string()))
            }
        }
        _ => Ok(()),
    }
}

fn typed_list(elem: &str, items: Vec<IValue>) -> IValue {
    IValue::List(Arc::new(List {
        elem_type: TypeExpr::name(elem),
        items,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass verifier's verdict and the two parts' (first part's error first).
    fn verdicts(buf: &[u8]) -> (Result<(), FormatError>, Result<(), FormatError>) {
        let opts = verifier_options(buf.len());
        let one_pass = fb::root_as_module_with_opts(&opts, buf)
            .map(|_| ())
            .map_err(|e| verify_error(e, buf.len()));
        let parts = verify_part(buf, &opts, Part::Values)
            .and_then(|()| verify_part(buf, &opts, Part::Rest));
        (one_pass, parts)
    }

    #[test]
    fn the_two_part_verification_agrees_with_the_one_pass_verifier() {
        let mut files: Vec<_> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../corpus"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "ptl"))
                .collect();
        files.sort();
        assert!(files.len() > 20, "{} corpus flatbuffers", files.len());
        let (mut checked, mut refused) = (0, 0);
        for path in files {
            let original = std::fs::read(&path).unwrap();
            let (one, two) = verdicts(&original);
            assert!(one.is_ok(), "{}: {one:?}", path.display());
            assert_eq!(one, two, "{}", path.display());
            // Damage: a deterministic walk over single-byte changes.
            let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ original.len() as u64;
            for _ in 0..300 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let mut buf = original.clone();
                let at = (state % buf.len() as u64) as usize;
                buf[at] = (state >> 32) as u8;
                let (one, two) = verdicts(&buf);
                assert_eq!(one, two, "{} with byte {at} set", path.display());
                checked += 1;
                refused += one.is_err() as usize;
            }
        }
        // The damage must actually exercise refusals, not just accepted buffers.
        assert!(
            refused > 1000,
            "{refused} of {checked} damaged buffers refused"
        );
    }
}

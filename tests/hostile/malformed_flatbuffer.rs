//! Hostile mobile flatbuffers (`PTMF`): `read_flatbuffer` must return an error that
//! names the broken field, never panic, hang, overflow the stack or allocate without
//! bound.
//!
//! Inputs come from two honest sources: byte patches of real PyTorch-made files at
//! offsets found by walking the raw flatbuffer (`Raw` below), and small modules built
//! with the `flatbuffers` builder (`Spec` below), whose untweaked form reads fine.

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};
use ptconform::error::{FormatError, rules};
use ptconform::flatbuffer::generated::mobile_bytecode as fb;
use ptconform::flatbuffer::read_flatbuffer;
use ptconform::flatbuffer::support::create_aligned_bytes;

// ---------------------------------------------------------------------------------
// Reading and asserting

fn read(bytes: &[u8]) -> Result<ptconform::flatbuffer::MobileModule, FormatError> {
    read_flatbuffer(&Bytes::copy_from_slice(bytes), None)
}

fn corpus_bytes(name: &str) -> Vec<u8> {
    std::fs::read(common::corpus(name)).unwrap()
}

/// The read fails, its field is exactly `field`, and its message contains `msg`.
#[track_caller]
fn expect_err(bytes: &[u8], field: &str, msg: &str) -> FormatError {
    let e = match read(bytes) {
        Ok(_) => panic!("expected an error at {field:?}, but the buffer was accepted"),
        Err(e) => e,
    };
    assert_eq!(e.location.record, field, "wrong field in {e}");
    assert!(e.message.contains(msg), "expected {msg:?} in {e}");
    e
}

/// As `expect_err`, for fields that the flatbuffer verifier names (its trace can go
/// deeper than the field we broke, so a prefix is enough).
#[track_caller]
fn expect_verify_err(bytes: &[u8], field_prefix: &str) -> FormatError {
    let e = match read(bytes) {
        Ok(_) => panic!("expected an error at {field_prefix:?}, but the buffer was accepted"),
        Err(e) => e,
    };
    assert!(
        e.location.record.starts_with(field_prefix),
        "expected field {field_prefix:?}…, got {e}"
    );
    // The verifier's refusal, or a field check's where the verifier has no limit.
    assert!(
        e.rule == rules::FLATBUFFER_VERIFIER || e.rule == rules::FLATBUFFER,
        "{e}"
    );
    e
}

// ---------------------------------------------------------------------------------
// A tiny walker over raw flatbuffer bytes (spec §2 slot numbers)

mod slot {
    pub const MODULE_METHODS: usize = 2;
    pub const MODULE_STATE_OBJ: usize = 3;
    pub const MODULE_IVALUES: usize = 4;
    pub const MODULE_STORAGE_DATA_SIZE: usize = 5;
    pub const IVALUE_VAL_TYPE: usize = 0;
    pub const IVALUE_VAL: usize = 1;
    pub const LIST_ITEMS: usize = 0;
    pub const OBJECT_TYPE_INDEX: usize = 0;
    pub const OBJECT_ATTRS: usize = 2;
    pub const FUNCTION_INSTRUCTIONS: usize = 1;
    pub const TENSOR_STORAGE_LOCATION_INDEX: usize = 0;
    pub const TENSOR_SIZES: usize = 3;
}

struct Raw<'b>(&'b [u8]);

impl Raw<'_> {
    fn u16(&self, p: usize) -> u16 {
        u16::from_le_bytes(self.0[p..p + 2].try_into().unwrap())
    }
    fn u32(&self, p: usize) -> u32 {
        u32::from_le_bytes(self.0[p..p + 4].try_into().unwrap())
    }
    fn i32(&self, p: usize) -> i32 {
        i32::from_le_bytes(self.0[p..p + 4].try_into().unwrap())
    }
    fn root(&self) -> usize {
        self.u32(0) as usize
    }
    fn vtable(&self, table: usize) -> usize {
        (table as i64 - self.i32(table) as i64) as usize
    }
    /// Byte position of a table field, or None when the field is absent (default).
    fn field(&self, table: usize, slot: usize) -> Option<usize> {
        let vt = self.vtable(table);
        let vo = 4 + 2 * slot;
        if vo >= self.u16(vt) as usize {
            return None;
        }
        match self.u16(vt + vo) as usize {
            0 => None,
            off => Some(table + off),
        }
    }
    /// Follows the uoffset stored at `p`.
    fn deref(&self, p: usize) -> usize {
        p + self.u32(p) as usize
    }
    /// `(position of the length word, length)` of a vector field.
    fn vector(&self, table: usize, slot: usize) -> Option<(usize, usize)> {
        let p = self.deref(self.field(table, slot)?);
        Some((p, self.u32(p) as usize))
    }
    fn ivalue(&self, i: usize) -> usize {
        let (v, n) = self.vector(self.root(), slot::MODULE_IVALUES).unwrap();
        assert!(i < n);
        self.deref(v + 4 + 4 * i)
    }
    fn ivalue_count(&self) -> usize {
        self.vector(self.root(), slot::MODULE_IVALUES).unwrap().1
    }
    fn tag(&self, i: usize) -> u8 {
        self.field(self.ivalue(i), slot::IVALUE_VAL_TYPE)
            .map_or(0, |p| self.0[p])
    }
    /// Position of the union offset field of ivalue `i`.
    fn val_field(&self, i: usize) -> usize {
        self.field(self.ivalue(i), slot::IVALUE_VAL).unwrap()
    }
    /// The table (or struct) ivalue `i`'s union value points at.
    fn val(&self, i: usize) -> usize {
        self.deref(self.val_field(i))
    }
    /// First ivalue with this tag satisfying `pred` (on its value position).
    fn find(&self, tag: u8, pred: impl Fn(usize) -> bool) -> Option<usize> {
        (0..self.ivalue_count()).find(|&i| self.tag(i) == tag && pred(self.val(i)))
    }
}

fn put_u32(b: &mut [u8], p: usize, v: u32) {
    b[p..p + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_i32(b: &mut [u8], p: usize, v: i32) {
    b[p..p + 4].copy_from_slice(&v.to_le_bytes());
}

/// The corpus file with every kind of ivalue (lists, tuples, dicts, scalars…).
const ATTRS: &str = "fbonly_attributes_no_enum.ptl";

const TAG_INT: u8 = 1;
const TAG_TENSOR: u8 = 5;
const TAG_LIST: u8 = 7;
const TAG_OBJECT: u8 = 10;
const TAG_FUNCTION: u8 = 16;

// ---------------------------------------------------------------------------------
// A small module builder: NONE, one root Object, one ObjectType; tests tweak one thing

#[derive(Clone, Debug)]
pub(crate) enum V {
    None,
    Int(i64),
    Bool(bool),
    Str(&'static str),
    List(Vec<u32>),
    Tuple(Vec<u32>),
    Dict(Vec<u32>, Vec<u32>),
    Object(Obj),
    Enum(u32),
    Tensor(Tm),
    Func(Func),
    /// Another value's payload under a different union tag.
    Tagged(u8, Box<V>),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Obj {
    type_index: u32,
    attrs: Option<Vec<u32>>,
    state: u32,
    setstate_func: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Tm {
    storage: u32,
    scalar_type: i8,
    pub(crate) offset: i32,
    pub(crate) sizes: Vec<i32>,
    pub(crate) strides: Vec<i32>,
    qscheme: Option<i8>,
}

impl Tm {
    /// A contiguous float32 vector of `n` elements over storage `storage`.
    pub(crate) fn floats(storage: u32, n: i32) -> Tm {
        Tm {
            storage,
            scalar_type: 6,
            offset: 0,
            sizes: vec![n],
            strides: vec![1],
            qscheme: None,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Func {
    instructions: Vec<(i8, u16, i32)>,
    operators: Vec<(&'static str, &'static str)>,
    constants: Vec<u32>,
    type_annotations: Vec<&'static str>,
    register_size: i32,
    class_type: u32,
    /// Default values of extra arguments after `self` (0 = no default).
    defaults: Vec<u32>,
}

/// Opcodes used below (spec §5).
mod op {
    pub const OP: i8 = 0;
    pub const OPN: i8 = 1;
    pub const LOAD: i8 = 2;
    pub const MOVE: i8 = 3;
    pub const STOREN: i8 = 4;
    pub const STORE: i8 = 5;
    pub const DROPR: i8 = 7;
    pub const LOADC: i8 = 8;
    pub const JF: i8 = 9;
    pub const JMP: i8 = 10;
    pub const LOOP: i8 = 11;
    pub const RET: i8 = 12;
    pub const INTERFACE_CALL: i8 = 20;
    pub const TUPLE_CONSTRUCT: i8 = 24;
    pub const LIST_CONSTRUCT: i8 = 26;
    pub const DICT_CONSTRUCT: i8 = 27;
    pub const ISINSTANCE: i8 = 29;
    pub const FORMAT: i8 = 38;
}

impl Func {
    /// `forward(self, x)`: STOREN 1 2; LOAD 2; LOADC 0; OP 0; RET.
    fn forward() -> Func {
        Func {
            instructions: vec![
                (op::STOREN, 2, 1),
                (op::LOAD, 0, 2),
                (op::LOADC, 0, 0),
                (op::OP, 0, 0),
                (op::RET, 0, 0),
            ],
            operators: vec![("aten::add", "Scalar")],
            constants: vec![],
            type_annotations: vec!["List[int]"],
            register_size: 2,
            class_type: 0,
            defaults: vec![0],
        }
    }

    /// A function whose body is `instructions` (RET appended), with one operator,
    /// `constants`, one type annotation and two registers.
    fn with_code(instructions: &[(i8, u16, i32)], constants: Vec<u32>) -> Func {
        let mut f = Func::forward();
        f.instructions = instructions.to_vec();
        f.instructions.push((op::RET, 0, 0));
        f.constants = constants;
        f
    }
}

const CLASS_WITH_FIELD: u8 = 1;
const CLASS_WITH_SETSTATE: u8 = 3;

#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) ivalues: Vec<V>,
    methods: Vec<u32>,
    state_obj: u32,
    types: Vec<(&'static str, u8, Vec<String>)>,
    storages: Vec<Vec<u8>>,
    storage_data_size: Option<i32>,
    jit_constants: Vec<u32>,
    mobile_ivalue_size: Option<u32>,
    /// `(qualifier, text)` sources; `Some` also writes an empty `extra_files` (what
    /// PyTorch's loaders need to load the file).
    pub(crate) jit_sources: Option<Vec<(String, String)>>,
    /// Storages as plain byte vectors (not 32-byte aligned ones).
    pub(crate) plain_storages: bool,
}

impl Spec {
    /// `[NONE, Object(type 0, no attrs)]`, one `CLASS_WITH_FIELD` type, no methods.
    pub(crate) fn base() -> Spec {
        Spec {
            ivalues: vec![
                V::None,
                V::Object(Obj {
                    attrs: Some(vec![]),
                    ..Obj::default()
                }),
            ],
            methods: vec![],
            state_obj: 1,
            types: vec![("__torch__.M", CLASS_WITH_FIELD, vec![])],
            storages: vec![],
            storage_data_size: None,
            jit_constants: vec![],
            mobile_ivalue_size: None,
            jit_sources: None,
            plain_storages: false,
        }
    }

    pub(crate) fn push(&mut self, v: V) -> u32 {
        self.ivalues.push(v);
        (self.ivalues.len() - 1) as u32
    }

    /// Adds an attribute to the root object (and its type) referring to ivalue `idx`.
    fn attr_ref(&mut self, idx: u32) {
        let k = self.types[0].2.len();
        self.types[0].2.push(format!("a{k}"));
        match &mut self.ivalues[self.state_obj as usize] {
            V::Object(o) => o.attrs.get_or_insert_with(Vec::new).push(idx),
            other => panic!("root is {other:?}"),
        }
    }

    /// Pushes `v` and makes it an attribute of the root object; returns its index.
    pub(crate) fn attr(&mut self, v: V) -> u32 {
        let i = self.push(v);
        self.attr_ref(i);
        i
    }

    /// Pushes a function and lists it in `Module.methods`; returns its index.
    fn method(&mut self, f: Func) -> u32 {
        let i = self.push(V::Func(f));
        self.methods.push(i);
        i
    }

    pub(crate) fn storage(&mut self, bytes: usize) -> u32 {
        self.storages.push((0..bytes).map(|b| b as u8).collect());
        (self.storages.len() - 1) as u32
    }

    /// A module using every kind the tests break: a method with a constant and a
    /// default value, containers, an enum, a tensor over a storage, a string.
    fn rich() -> (Spec, Rich) {
        let mut s = Spec::base();
        let one = s.push(V::Int(1));
        let mut f = Func::forward();
        f.constants = vec![one];
        f.defaults = vec![one];
        let method = s.method(f);
        let list = s.attr(V::List(vec![one, one]));
        let tuple = s.attr(V::Tuple(vec![one]));
        let key = s.push(V::Str("k"));
        let dict = s.attr(V::Dict(vec![key], vec![one]));
        let en = s.attr(V::Enum(one));
        let st = s.storage(16);
        let tensor = s.attr(V::Tensor(Tm::floats(st, 4)));
        s.attr(V::Bool(true));
        (
            s,
            Rich {
                method,
                list,
                tuple,
                dict,
                en,
                tensor,
            },
        )
    }

    pub(crate) fn build(&self) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();
        let mut ivs = Vec::new();
        for v in &self.ivalues {
            let (tag, val) = union(&mut fbb, v);
            ivs.push(fb::IValue::create(
                &mut fbb,
                &fb::IValueArgs { val_type: tag, val },
            ));
        }
        let ivalues = fbb.create_vector(&ivs);
        let mut types = Vec::new();
        for (name, kind, attrs) in &self.types {
            let names: Vec<_> = attrs.iter().map(|a| fbb.create_string(a)).collect();
            let attr_names = (*kind != CLASS_WITH_SETSTATE).then(|| fbb.create_vector(&names));
            let type_name = fbb.create_string(name);
            types.push(fb::ObjectType::create(
                &mut fbb,
                &fb::ObjectTypeArgs {
                    type_name: Some(type_name),
                    type_: fb::TypeType(*kind),
                    attr_names,
                },
            ));
        }
        let object_types = fbb.create_vector(&types);
        let mut storages = Vec::new();
        for data in &self.storages {
            let d = if self.plain_storages {
                fbb.create_vector(data)
            } else {
                create_aligned_bytes(&mut fbb, data, 32)
            };
            storages.push(fb::StorageData::create(
                &mut fbb,
                &fb::StorageDataArgs { data: Some(d) },
            ));
        }
        let storage_data = fbb.create_vector(&storages);
        let methods = fbb.create_vector(&self.methods);
        let jit_constants = fbb.create_vector(&self.jit_constants);
        let (extra_files, jit_sources) = match &self.jit_sources {
            None => (None, None),
            Some(sources) => {
                let files: Vec<_> = sources
                    .iter()
                    .map(|(q, text)| {
                        let name = fbb.create_string(q);
                        let content = WIPOffset::new(fbb.create_string(text).value());
                        fb::ExtraFile::create(
                            &mut fbb,
                            &fb::ExtraFileArgs {
                                name: Some(name),
                                content: Some(content),
                            },
                        )
                    })
                    .collect();
                let none: Vec<WIPOffset<fb::ExtraFile>> = Vec::new();
                (
                    Some(fbb.create_vector(&none)),
                    Some(fbb.create_vector(&files)),
                )
            }
        };
        let m = fb::Module::create(
            &mut fbb,
            &fb::ModuleArgs {
                bytecode_version: 9,
                extra_files,
                methods: Some(methods),
                state_obj: self.state_obj,
                ivalues: Some(ivalues),
                storage_data_size: self.storage_data_size.unwrap_or(self.storages.len() as i32),
                storage_data: Some(storage_data),
                object_types: Some(object_types),
                jit_sources,
                jit_constants: Some(jit_constants),
                operator_version: 1,
                mobile_ivalue_size: self.mobile_ivalue_size.unwrap_or(self.ivalues.len() as u32),
            },
        );
        fb::finish_module_buffer(&mut fbb, m);
        fbb.finished_data().to_vec()
    }
}

/// Where `Spec::rich` put things.
#[derive(Clone, Copy, Debug)]
struct Rich {
    method: u32,
    list: u32,
    tuple: u32,
    dict: u32,
    en: u32,
    tensor: u32,
}

fn union(
    fbb: &mut FlatBufferBuilder<'static>,
    v: &V,
) -> (fb::IValueUnion, Option<WIPOffset<UnionWIPOffset>>) {
    use fb::IValueUnion as U;
    let u32s = |fbb: &mut FlatBufferBuilder<'static>, v: &[u32]| fbb.create_vector(v);
    match v {
        V::None => (U::NONE, None),
        V::Int(i) => (U::Int, Some(fbb.push(fb::Int::new(*i)).as_union_value())),
        V::Bool(b) => (U::Bool, Some(fbb.push(fb::Bool::new(*b)).as_union_value())),
        V::Str(s) => {
            let d = fbb.create_string(s);
            let t = fb::String::create(fbb, &fb::StringArgs { data: Some(d) });
            (U::String, Some(t.as_union_value()))
        }
        V::List(items) => {
            let items = u32s(fbb, items);
            let ann = fbb.create_string("List[int]");
            let t = fb::List::create(
                fbb,
                &fb::ListArgs {
                    items: Some(items),
                    annotation_str: Some(ann),
                },
            );
            (U::List, Some(t.as_union_value()))
        }
        V::Tuple(items) => {
            let items = u32s(fbb, items);
            let t = fb::Tuple::create(fbb, &fb::TupleArgs { items: Some(items) });
            (U::Tuple, Some(t.as_union_value()))
        }
        V::Dict(keys, values) => {
            let keys = u32s(fbb, keys);
            let values = u32s(fbb, values);
            let ann = fbb.create_string("Dict[str, int]");
            let t = fb::Dict::create(
                fbb,
                &fb::DictArgs {
                    keys: Some(keys),
                    values: Some(values),
                    annotation_str: Some(ann),
                },
            );
            (U::Dict, Some(t.as_union_value()))
        }
        V::Object(o) => {
            let attrs = o.attrs.as_ref().map(|a| u32s(fbb, a));
            let t = fb::Object::create(
                fbb,
                &fb::ObjectArgs {
                    type_index: o.type_index,
                    state: o.state,
                    attrs,
                    setstate_func: o.setstate_func,
                },
            );
            (U::Object, Some(t.as_union_value()))
        }
        V::Enum(value) => {
            let name = fbb.create_string("__torch__.Color");
            let t = fb::EnumValue::create(
                fbb,
                &fb::EnumValueArgs {
                    type_name: Some(name),
                    value: *value,
                },
            );
            (U::EnumValue, Some(t.as_union_value()))
        }
        V::Tensor(tm) => {
            let quantized_schema = tm.qscheme.map(|q| {
                fb::QuantizedSchema::create(
                    fbb,
                    &fb::QuantizedSchemaArgs {
                        qscheme: q,
                        scale: 0.5,
                        zero_point: 0,
                        ..Default::default()
                    },
                )
            });
            let sizes = fbb.create_vector(&tm.sizes);
            let strides = fbb.create_vector(&tm.strides);
            let t = fb::TensorMetadata::create(
                fbb,
                &fb::TensorMetadataArgs {
                    storage_location_index: tm.storage,
                    scalar_type: tm.scalar_type,
                    storage_offset: tm.offset,
                    sizes: Some(sizes),
                    strides: Some(strides),
                    requires_grad: false,
                    quantized_schema,
                },
            );
            (U::TensorMetadata, Some(t.as_union_value()))
        }
        V::Func(f) => {
            let mut ops = Vec::new();
            for (name, overload) in &f.operators {
                let name = fbb.create_string(name);
                let overload = fbb.create_string(overload);
                ops.push(fb::Operator::create(
                    fbb,
                    &fb::OperatorArgs {
                        name: Some(name),
                        overload_name: Some(overload),
                        num_args_serialized: 2,
                    },
                ));
            }
            let operators = fbb.create_vector(&ops);
            let ins: Vec<fb::Instruction> = f
                .instructions
                .iter()
                .map(|&(o, n, x)| fb::Instruction::new(o, n, x))
                .collect();
            let instructions = fbb.create_vector(&ins);
            let constants = u32s(fbb, &f.constants);
            let anns: Vec<_> = f
                .type_annotations
                .iter()
                .map(|a| fbb.create_string(a))
                .collect();
            let type_annotations = fbb.create_vector(&anns);
            let mut args = Vec::new();
            let self_name = fbb.create_string("self");
            let self_type = fbb.create_string("__torch__.M");
            args.push(fb::Arg::create(
                fbb,
                &fb::ArgArgs {
                    name: Some(self_name),
                    type_: Some(self_type),
                    default_value: 0,
                },
            ));
            for (k, &d) in f.defaults.iter().enumerate() {
                let name = fbb.create_string(&format!("x{k}"));
                let ty = fbb.create_string("int");
                args.push(fb::Arg::create(
                    fbb,
                    &fb::ArgArgs {
                        name: Some(name),
                        type_: Some(ty),
                        default_value: d,
                    },
                ));
            }
            let arguments = fbb.create_vector(&args);
            let rname = fbb.create_string("");
            let rtype = fbb.create_string("Tensor");
            let ret = fb::Arg::create(
                fbb,
                &fb::ArgArgs {
                    name: Some(rname),
                    type_: Some(rtype),
                    default_value: 0,
                },
            );
            let returns = fbb.create_vector(&[ret]);
            let schema = fb::Schema::create(
                fbb,
                &fb::SchemaArgs {
                    arguments: Some(arguments),
                    returns: Some(returns),
                },
            );
            let qn = fbb.create_string("__torch__.M.forward");
            let t = fb::Function::create(
                fbb,
                &fb::FunctionArgs {
                    qn: Some(qn),
                    instructions: Some(instructions),
                    operators: Some(operators),
                    constants: Some(constants),
                    type_annotations: Some(type_annotations),
                    register_size: f.register_size,
                    schema: Some(schema),
                    debug_info: None,
                    class_type: f.class_type,
                },
            );
            (U::Function, Some(t.as_union_value()))
        }
        V::Tagged(tag, inner) => {
            let (_, val) = union(fbb, inner);
            (fb::IValueUnion(*tag), val)
        }
    }
}

type SpecTweak = Box<dyn Fn(&mut Spec)>;
type TmTweak<'a> = &'a dyn Fn(&mut Tm);
/// Instructions `(op, n, x)`.
type Code = &'static [(i8, u16, i32)];

fn iv(i: u32) -> String {
    format!("Module.ivalues[{i}]")
}

// ---------------------------------------------------------------------------------
// The helpers themselves: untweaked inputs read fine (or every test below is void)

#[test]
fn untweaked_built_modules_read() {
    let m = read(&Spec::base().build()).expect("base module reads");
    assert_eq!(m.object_types.len(), 1);
    let (s, r) = Spec::rich();
    let m = read(&s.build()).expect("rich module reads");
    assert_eq!(m.methods.len(), 1);
    assert_eq!(m.functions.len(), 1);
    assert_eq!(m.storage_count, 1);
    let _ = r;
}

#[test]
fn every_corpus_flatbuffer_reads() {
    let mut n = 0;
    for e in std::fs::read_dir(common::repo().join("corpus")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "ptl") {
            let b = std::fs::read(&p).unwrap();
            if let Err(e) = read(&b) {
                panic!("{}: {e}", p.display());
            }
            n += 1;
        }
    }
    assert!(n >= 5, "only {n} corpus flatbuffers");
}

#[test]
fn raw_walker_agrees_with_the_reader() {
    let b = corpus_bytes("linear.ptl");
    let raw = Raw(&b);
    let m = read(&b).unwrap();
    let methods = raw.vector(raw.root(), slot::MODULE_METHODS).unwrap();
    assert_eq!(methods.1, m.methods.len());
    let f = raw.u32(methods.0 + 4);
    assert_eq!(raw.tag(f as usize), TAG_FUNCTION);
    let ins = raw
        .vector(raw.val(f as usize), slot::FUNCTION_INSTRUCTIONS)
        .unwrap();
    assert_eq!(ins.1, m.methods[0].instructions.len());
    assert_eq!(
        raw.0[ins.0 + 4] as i8,
        m.methods[0].instructions[0].op as i8
    );
}

// ---------------------------------------------------------------------------------
// Container-level damage to real files

#[test]
fn wrong_identifier() {
    let mut b = corpus_bytes("linear.ptl");
    b[4..8].copy_from_slice(b"PTMX");
    let e = expect_err(&b, "identifier", "PTMF");
    assert_eq!(e.location.offset, Some(4));
    assert!(read(&[]).is_err());
    assert!(read(b"\x08\0\0\0PTM").is_err());
}

#[test]
fn every_truncation_of_linear_is_rejected() {
    let b = corpus_bytes("linear.ptl");
    for cut in 0..b.len() {
        let r = std::panic::catch_unwind(|| read(&b[..cut]));
        match r {
            Err(_) => panic!("panic at cut {cut}"),
            Ok(Ok(_)) => panic!("truncation at {cut} of {} accepted", b.len()),
            Ok(Err(e)) => assert!(!e.location.record.is_empty(), "{e}"),
        }
    }
}

#[test]
fn root_offset_outside_the_buffer() {
    for name in ["linear.ptl", "containers.ptl"] {
        let mut b = corpus_bytes(name);
        let len = b.len() as u32;
        for root in [len, len + 4, u32::MAX - 3, len - 2] {
            put_u32(&mut b, 0, root);
            let e = expect_verify_err(&b, "Module");
            assert!(e.location.offset.is_some(), "{e}");
        }
    }
}

#[test]
fn table_soffset_to_vtable_outside_the_buffer() {
    let mut b = corpus_bytes("linear.ptl");
    let root = Raw(&b).root();
    for soff in [i32::MIN, -(b.len() as i32), (root as i32) + 1, 3] {
        put_i32(&mut b, root, soff);
        expect_verify_err(&b, "Module");
    }
    // The same for an ivalue's table (the verifier names the vector element).
    let mut b = corpus_bytes("linear.ptl");
    let t = Raw(&b).ivalue(2);
    let back = -(b.len() as i32);
    put_i32(&mut b, t, back);
    expect_verify_err(&b, "Module.ivalues[2]");
}

#[test]
fn vtable_field_offsets_outside_the_table_and_buffer() {
    let mut b = corpus_bytes("linear.ptl");
    let raw = Raw(&b);
    let vt = raw.vtable(raw.root());
    let p = vt + 4 + 2 * slot::MODULE_IVALUES;
    b[p..p + 2].copy_from_slice(&0xfff0u16.to_le_bytes());
    expect_verify_err(&b, "Module");
    // A vtable length that runs past the buffer.
    let mut b = corpus_bytes("linear.ptl");
    let vt = Raw(&b).vtable(Raw(&b).root());
    b[vt..vt + 2].copy_from_slice(&0xfffeu16.to_le_bytes());
    expect_verify_err(&b, "Module");
}

#[test]
fn vector_offsets_outside_the_buffer() {
    let b0 = corpus_bytes(ATTRS);
    let raw = Raw(&b0);
    // Module.ivalues, Module.methods.
    for s in [slot::MODULE_IVALUES, slot::MODULE_METHODS] {
        let mut b = b0.clone();
        let f = raw.field(raw.root(), s).unwrap();
        put_u32(&mut b, f, (b0.len() - f + 8) as u32);
        let e = expect_verify_err(&b, "Module.");
        let name = if s == slot::MODULE_IVALUES {
            "Module.ivalues"
        } else {
            "Module.methods"
        };
        assert_eq!(e.location.record, name);
    }
    // A List's items inside an ivalue.
    let li = raw
        .find(TAG_LIST, |t| raw.vector(t, slot::LIST_ITEMS).is_some())
        .unwrap();
    let f = raw.field(raw.val(li), slot::LIST_ITEMS).unwrap();
    let mut b = b0.clone();
    put_u32(&mut b, f, u32::MAX - 16);
    let e = expect_verify_err(&b, &format!("Module.ivalues[{li}].List.items"));
    assert_eq!(
        e.location.record,
        format!("Module.ivalues[{li}].List.items")
    );
}

#[test]
fn huge_vector_lengths_are_rejected_before_allocation() {
    let b0 = corpus_bytes(ATTRS);
    let raw = Raw(&b0);
    let (iv_len_pos, _) = raw.vector(raw.root(), slot::MODULE_IVALUES).unwrap();
    let li = raw
        .find(TAG_LIST, |t| raw.vector(t, slot::LIST_ITEMS).is_some())
        .unwrap();
    let (items_len_pos, _) = raw.vector(raw.val(li), slot::LIST_ITEMS).unwrap();
    let ti = raw
        .find(TAG_TENSOR, |t| raw.vector(t, slot::TENSOR_SIZES).is_some())
        .unwrap();
    let (sizes_len_pos, _) = raw.vector(raw.val(ti), slot::TENSOR_SIZES).unwrap();
    for (pos, field) in [
        (iv_len_pos, "Module.ivalues".to_string()),
        (items_len_pos, format!("Module.ivalues[{li}].List.items")),
        (
            sizes_len_pos,
            format!("Module.ivalues[{ti}].TensorMetadata.sizes"),
        ),
    ] {
        let with_len = |len: u32| {
            let mut b = b0.clone();
            put_u32(&mut b, pos, len);
            b
        };
        for len in [u32::MAX, 0x4000_0000, 0x0100_0000] {
            let e = expect_verify_err(&with_len(len), &field);
            assert_eq!(e.location.record, field);
            assert!(e.message.contains("outside"), "{e}");
        }
        // Rejecting a claimed length costs nothing in proportion to it: 4 billion
        // elements no more than 1,024.
        common::assert_growth(&field, 1 << 10, u32::MAX as usize, 4.0, |len| {
            read(&with_len(len as u32)).is_err()
        });
    }
}

#[test]
fn shared_string_amplification_is_bounded() {
    // One 1 MiB string named 1 500 (or 100 000) times by an ObjectType's attr_names: a
    // 1–1.4 MB file that expands to 1.5 GiB (100 GiB) if every reference is verified
    // and copied. 1 500 stays under a flat 2 GiB verifier limit, so the reader itself
    // would copy 1.5 GiB of names.
    for refs in [1_500, 100_000] {
        let e = expect_verify_err(&amplified(refs), "Module");
        assert!(e.message.contains("apparent size"), "{e}");
    }
    // The reader's work does not follow the references: 66x more of them cost about
    // the same (each file is mostly its one 1 MiB string).
    let (few, many) = (amplified(1_500), amplified(100_000));
    common::assert_growth("shared 1 MiB name", 1_500, 100_000, 4.0, |refs| {
        read(if refs == 1_500 { &few } else { &many }).is_err()
    });
}

fn amplified(refs: usize) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::new();
    let none = fb::IValue::create(&mut fbb, &fb::IValueArgs::default());
    let obj = fb::Object::create(&mut fbb, &fb::ObjectArgs::default());
    let obj = fb::IValue::create(
        &mut fbb,
        &fb::IValueArgs {
            val_type: fb::IValueUnion::Object,
            val: Some(obj.as_union_value()),
        },
    );
    let ivalues = fbb.create_vector(&[none, obj]);
    let big = fbb.create_string(&"a".repeat(1 << 20));
    let names = fbb.create_vector(&vec![big; refs]);
    let type_name = fbb.create_string("__torch__.M");
    let ty = fb::ObjectType::create(
        &mut fbb,
        &fb::ObjectTypeArgs {
            type_name: Some(type_name),
            type_: fb::TypeType(CLASS_WITH_FIELD),
            attr_names: Some(names),
        },
    );
    let object_types = fbb.create_vector(&[ty]);
    let m = fb::Module::create(
        &mut fbb,
        &fb::ModuleArgs {
            state_obj: 1,
            ivalues: Some(ivalues),
            object_types: Some(object_types),
            ..Default::default()
        },
    );
    fb::finish_module_buffer(&mut fbb, m);
    let b = fbb.finished_data().to_vec();
    assert!(b.len() < 2 << 20);
    b
}

#[test]
fn unknown_union_tags() {
    let b0 = corpus_bytes(ATTRS);
    let raw = Raw(&b0);
    let li = raw.find(TAG_LIST, |_| true).unwrap();
    let p = raw.field(raw.ivalue(li), slot::IVALUE_VAL_TYPE).unwrap();
    for tag in [17u8, 100, 255] {
        let mut b = b0.clone();
        b[p] = tag;
        expect_err(
            &b,
            &format!("{}.val_type", iv(li as u32)),
            &format!("unknown IValueUnion tag {tag}"),
        );
    }
    // Built: tag 17 on a List payload.
    let mut s = Spec::base();
    let i = s.attr(V::Tagged(17, Box::new(V::List(vec![]))));
    expect_err(
        &s.build(),
        &format!("{}.val_type", iv(i)),
        "unknown IValueUnion tag 17",
    );
}

#[test]
fn struct_union_members_out_of_range_or_misaligned() {
    let b0 = corpus_bytes(ATTRS);
    let raw = Raw(&b0);
    let ii = raw.find(TAG_INT, |_| true).expect("an Int ivalue");
    let slot_pos = raw.val_field(ii);
    let field = format!("{}.val", iv(ii as u32));
    // Past the end.
    let mut b = b0.clone();
    put_u32(&mut b, slot_pos, (b0.len() - slot_pos - 4) as u32);
    expect_err(&b, &field, "out of bounds");
    let mut b = b0.clone();
    put_u32(&mut b, slot_pos, u32::MAX - 8);
    expect_err(&b, &field, "");
    // Misaligned by 4 (Int needs 8).
    let mut b = b0.clone();
    let off = raw.u32(slot_pos);
    put_u32(&mut b, slot_pos, off + 4);
    expect_err(&b, &field, "nalign");
    // Tags 1..=4 on table payloads whose bytes run past the buffer or are misaligned:
    // switch a real ivalue's tag to each struct tag.
    for tag in 1u8..=4 {
        let mut s = Spec::base();
        let i = s.attr(V::Tagged(tag, Box::new(V::Str("x"))));
        let b = s.build();
        let p = Raw(&b).val_field(i as usize);
        let mut b2 = b.clone();
        put_u32(&mut b2, p, (b.len() - p) as u32);
        expect_err(&b2, &format!("{}.val", iv(i)), "");
        if tag != 2 {
            let mut b3 = b.clone();
            let t = Raw(&b).u32(p);
            put_u32(&mut b3, p, t + 1);
            expect_err(&b3, &format!("{}.val", iv(i)), "nalign");
        }
    }
}

#[test]
fn unknown_opcode_in_a_real_function() {
    let b0 = corpus_bytes("linear.ptl");
    let raw = Raw(&b0);
    let f = raw.find(TAG_FUNCTION, |_| true).unwrap();
    let (ins, n) = raw.vector(raw.val(f), slot::FUNCTION_INSTRUCTIONS).unwrap();
    assert!(n > 1);
    for (k, opcode) in [(0usize, 99i8), (n - 1, -1), (1, 51)] {
        let mut b = b0.clone();
        b[ins + 4 + 8 * k] = opcode as u8;
        let e = expect_err(
            &b,
            &format!("{}.Function.instructions[{k}].op", iv(f as u32)),
            &format!("unknown opcode {opcode}"),
        );
        assert_eq!(e.location.offset, Some((ins + 4 + 8 * k) as u64));
    }
}

#[test]
fn real_object_type_index_and_attr_out_of_range() {
    let b0 = corpus_bytes("linear.ptl");
    let raw = Raw(&b0);
    let oi = raw
        .find(TAG_OBJECT, |t| {
            raw.field(t, slot::OBJECT_TYPE_INDEX).is_some()
        })
        .or_else(|| raw.find(TAG_OBJECT, |_| true))
        .unwrap();
    let t = raw.val(oi);
    if let Some(p) = raw.field(t, slot::OBJECT_TYPE_INDEX) {
        let mut b = b0.clone();
        put_u32(&mut b, p, 1000);
        expect_err(
            &b,
            &format!("{}.Object.type_index", iv(oi as u32)),
            "1000 is out of range",
        );
    }
    let (attrs, n) = raw.vector(t, slot::OBJECT_ATTRS).unwrap();
    assert!(n > 0);
    let mut b = b0.clone();
    put_u32(&mut b, attrs + 4, 4000);
    expect_err(
        &b,
        &format!("{}.Object.attrs[0]", iv(oi as u32)),
        "ivalue index 4000 is out of range",
    );
}

#[test]
fn real_module_fields() {
    let b0 = corpus_bytes("getstate.ptl");
    let raw = Raw(&b0);
    let root = raw.root();
    let p = raw.field(root, slot::MODULE_STATE_OBJ).unwrap();
    let mut b = b0.clone();
    put_u32(&mut b, p, 9999);
    expect_err(&b, "Module.state_obj", "out of range");
    if let Some(p) = raw.field(root, slot::MODULE_STORAGE_DATA_SIZE) {
        let mut b = b0.clone();
        put_i32(&mut b, p, 77);
        expect_err(&b, "Module.storage_data_size", "says 77");
    }
    // A real tensor's storage index.
    let b0 = corpus_bytes("quantized.ptl");
    let raw = Raw(&b0);
    let ti = raw
        .find(TAG_TENSOR, |t| {
            raw.field(t, slot::TENSOR_STORAGE_LOCATION_INDEX).is_some()
        })
        .unwrap();
    let p = raw
        .field(raw.val(ti), slot::TENSOR_STORAGE_LOCATION_INDEX)
        .unwrap();
    let mut b = b0.clone();
    put_u32(&mut b, p, 500);
    expect_err(
        &b,
        &format!("{}.TensorMetadata.storage_location_index", iv(ti as u32)),
        "storage_location_index 500 is out of range",
    );
}

// ---------------------------------------------------------------------------------
// Out-of-range references, built

#[test]
fn module_methods_out_of_range_or_not_a_function() {
    let mut s = Spec::base();
    s.methods = vec![99];
    expect_err(
        &s.build(),
        "Module.methods[0]",
        "ivalue index 99 is out of range",
    );
    s.methods = vec![0];
    expect_err(&s.build(), "Module.methods[0]", "not a Function");
    s.methods = vec![1];
    expect_err(&s.build(), "Module.methods[0]", "not a Function");
}

#[test]
fn state_obj_out_of_range_or_not_an_object() {
    let mut s = Spec::base();
    s.state_obj = 2;
    expect_err(
        &s.build(),
        "Module.state_obj",
        "ivalue index 2 is out of range",
    );
    let mut s = Spec::base();
    let i = s.push(V::Int(3));
    s.state_obj = i;
    expect_err(&s.build(), "Module.state_obj", "not an object");
    let mut s = Spec::base();
    s.state_obj = 0;
    expect_err(&s.build(), "Module.state_obj", "not an object");
}

#[test]
fn container_items_out_of_range() {
    let (s0, r) = Spec::rich();
    let cases: Vec<(SpecTweak, String)> = vec![
        (
            Box::new(move |s: &mut Spec| s.ivalues[r.list as usize] = V::List(vec![2, 77])),
            format!("{}.List.items[1]", iv(r.list)),
        ),
        (
            Box::new(move |s: &mut Spec| s.ivalues[r.tuple as usize] = V::Tuple(vec![u32::MAX])),
            format!("{}.Tuple.items[0]", iv(r.tuple)),
        ),
        (
            Box::new(move |s: &mut Spec| s.ivalues[r.dict as usize] = V::Dict(vec![500], vec![2])),
            format!("{}.Dict.keys[0]", iv(r.dict)),
        ),
        (
            Box::new(move |s: &mut Spec| s.ivalues[r.dict as usize] = V::Dict(vec![0], vec![500])),
            format!("{}.Dict.values[0]", iv(r.dict)),
        ),
        (
            Box::new(move |s: &mut Spec| s.ivalues[r.en as usize] = V::Enum(1000)),
            format!("{}.EnumValue.value", iv(r.en)),
        ),
        (
            Box::new(|s: &mut Spec| {
                let n = s.ivalues.len() as u32;
                s.attr_ref(n + 5)
            }),
            format!("{}.Object.attrs[6]", iv(1)),
        ),
        (
            Box::new(|s: &mut Spec| s.jit_constants = vec![0, 123]),
            "Module.jit_constants[1]".to_string(),
        ),
    ];
    for (tweak, field) in cases {
        let mut s = s0.clone();
        tweak(&mut s);
        let b = s.build();
        let e = expect_err(&b, &field, "is out of range");
        // References inside ivalues also say where the bad index is stored.
        if field.starts_with("Module.ivalues") {
            let off = e.location.offset.expect("an offset") as usize;
            assert!(Raw(&b).u32(off) as usize >= s.ivalues.len(), "{e}");
        }
    }
}

#[test]
fn unreferenced_ivalues_are_checked_too() {
    // PyTorch's loader parses every ivalue: a broken one nothing points at still
    // makes the file invalid.
    let mut s = Spec::base();
    let i = s.push(V::List(vec![42]));
    expect_err(
        &s.build(),
        &format!("{}.List.items[0]", iv(i)),
        "out of range",
    );
    let mut s = Spec::base();
    let i = s.push(V::Object(Obj {
        type_index: 3,
        ..Obj::default()
    }));
    expect_err(
        &s.build(),
        &format!("{}.Object.type_index", iv(i)),
        "3 is out of range",
    );
}

#[test]
fn dict_keys_and_values_disagree() {
    let (mut s, r) = Spec::rich();
    s.ivalues[r.dict as usize] = V::Dict(vec![0, 0], vec![2]);
    expect_err(
        &s.build(),
        &format!("{}.Dict.values", iv(r.dict)),
        "2 keys but 1 values",
    );
}

#[test]
fn object_type_index_attrs_state_setstate() {
    let mut s = Spec::base();
    s.ivalues[1] = V::Object(Obj {
        type_index: 1,
        attrs: Some(vec![]),
        ..Obj::default()
    });
    expect_err(
        &s.build(),
        &format!("{}.Object.type_index", iv(1)),
        "1 is out of range (1 object types)",
    );

    let mut s = Spec::base();
    s.types[0].2.push("missing".into());
    let e = expect_err(
        &s.build(),
        &format!("{}.Object.attrs", iv(1)),
        "has 0 attributes",
    );
    assert_eq!(e.rule, rules::FLATBUFFER_TYPES);

    // A class with __setstate__: [NONE, Object, Function, state Int].
    let setstate = |state: u32, func: u32| {
        let mut s = Spec::base();
        s.types[0].1 = CLASS_WITH_SETSTATE;
        s.push(V::Func(Func::with_code(&[], vec![])));
        s.push(V::Int(7));
        s.ivalues[1] = V::Object(Obj {
            type_index: 0,
            attrs: None,
            state,
            setstate_func: func,
        });
        s
    };
    read(&setstate(3, 2).build()).expect("valid setstate object");
    expect_err(
        &setstate(30, 2).build(),
        &format!("{}.Object.state", iv(1)),
        "ivalue index 30 is out of range",
    );
    expect_err(
        &setstate(3, 20).build(),
        &format!("{}.Object.setstate_func", iv(1)),
        "ivalue index 20 is out of range",
    );
    expect_err(
        &setstate(3, 3).build(),
        &format!("{}.Object.setstate_func", iv(1)),
        "not a Function",
    );
    expect_err(
        &setstate(1, 2).build(),
        &format!("{}.Object.state", iv(1)),
        "contains itself",
    );

    // An unknown TypeType.
    let mut s = Spec::base();
    s.types[0].1 = 9;
    expect_err(
        &s.build(),
        "Module.object_types[0].type",
        "unknown TypeType 9",
    );
}

#[test]
fn function_references_out_of_range() {
    let (s0, r) = Spec::rich();
    let f = iv(r.method);
    let with = |tweak: &dyn Fn(&mut Func)| {
        let mut s = s0.clone();
        match &mut s.ivalues[r.method as usize] {
            V::Func(func) => tweak(func),
            _ => unreachable!(),
        }
        s.build()
    };
    expect_err(
        &with(&|f| f.constants = vec![2, 99]),
        &format!("{f}.Function.constants[1]"),
        "ivalue index 99 is out of range",
    );
    expect_err(
        &with(&|f| f.defaults = vec![0, 1234]),
        &format!("{f}.Function.schema.arguments[2].default_value"),
        "ivalue index 1234 is out of range",
    );
    expect_err(
        &with(&|f| f.class_type = 1),
        &format!("{f}.Function.class_type"),
        "1 is out of range (1 object types)",
    );
    expect_err(
        &with(&|f| f.register_size = -1),
        &format!("{f}.Function.register_size"),
        "negative",
    );
    // A constant that is itself a function (here: the function itself).
    expect_err(
        &with(&|f| f.constants = vec![r.method]),
        &format!("{f}.Function.constants[0]"),
        "is a Function, used where a value is expected",
    );
}

#[test]
fn mobile_ivalue_size_and_storage_data_size() {
    let mut s = Spec::base();
    s.mobile_ivalue_size = Some(3);
    expect_err(
        &s.build(),
        "Module.mobile_ivalue_size",
        "3 is larger than the 2 ivalues",
    );
    let (mut s, _) = Spec::rich();
    s.storage_data_size = Some(2);
    expect_err(
        &s.build(),
        "Module.storage_data_size",
        "says 2 but storage_data has 1",
    );
    s.storage_data_size = Some(-1);
    expect_err(&s.build(), "Module.storage_data_size", "says -1");
}

// ---------------------------------------------------------------------------------
// Instructions

#[test]
fn instruction_operands_out_of_range() {
    // One operator, one constant (ivalue 2 = Int), one type annotation, 2 registers.
    let cases: &[(Code, usize, &str, &str)] = &[
        (
            &[(op::OP, 0, 1)],
            0,
            "x",
            "operator index out of range (1 operators)",
        ),
        (&[(op::OPN, 3, -1)], 0, "x", "operator index out of range"),
        (
            &[(op::LOADC, 0, 1)],
            0,
            "x",
            "constant index out of range (1 constants)",
        ),
        (&[(op::LOADC, 0, -5)], 0, "x", "constant index out of range"),
        (
            &[(op::LOAD, 0, 0)],
            0,
            "x",
            "register out of range (register_size 2)",
        ),
        (&[(op::LOAD, 0, 3)], 0, "x", "register out of range"),
        (
            &[(op::MOVE, 0, 1), (op::STORE, 0, 9)],
            1,
            "x",
            "register out of range",
        ),
        (&[(op::DROPR, 0, i32::MAX)], 0, "x", "register out of range"),
        (&[(op::STOREN, 3, 1)], 0, "x", "registers out of range"),
        (
            &[(op::STOREN, u16::MAX, 2)],
            0,
            "x",
            "registers out of range",
        ),
        (
            &[(op::LIST_CONSTRUCT, 2, 1)],
            0,
            "x",
            "type annotation index out of range",
        ),
        (
            &[(op::DICT_CONSTRUCT, 2, 5)],
            0,
            "x",
            "type annotation index out of range",
        ),
        (
            &[(op::DICT_CONSTRUCT, 3, 0)],
            0,
            "n",
            "odd number of inputs",
        ),
        (&[(op::ISINSTANCE, 2, 0)], 0, "x", "types out of range"),
        (
            &[(op::JMP, 0, 5)],
            0,
            "x",
            "jump target 5 is outside the function (2 instructions)",
        ),
        (&[(op::JF, 0, -1)], 0, "x", "jump target -1"),
        (&[(op::LOOP, 2, 100)], 0, "x", "jump target 100"),
        (&[(op::LOOP, 1, 1)], 0, "n", "loop needs at least 2 inputs"),
        (
            &[(op::FORMAT, 0, 0)],
            0,
            "x",
            "format needs at least its format string",
        ),
        (&[(op::TUPLE_CONSTRUCT, 0, -2)], 0, "x", "negative operand"),
        (
            &[(op::INTERFACE_CALL, 1, 3)],
            0,
            "x",
            "constant index out of range",
        ),
        (
            &[(op::INTERFACE_CALL, 0, 0)],
            0,
            "n",
            "interface call without inputs",
        ),
    ];
    let mut valid = Spec::base();
    let c = valid.push(V::Int(5));
    let fi = valid.method(Func::with_code(
        &[
            (op::OP, 0, 0),
            (op::LOADC, 0, 0),
            (op::STOREN, 2, 1),
            (op::LOAD, 0, 2),
            (op::DICT_CONSTRUCT, 2, 0),
            (op::JF, 0, 1),
            (op::JMP, 0, -6),
        ],
        vec![c],
    ));
    read(&valid.build()).expect("valid code reads");
    for (code, k, operand, msg) in cases {
        let mut s = valid.clone();
        s.ivalues[fi as usize] = V::Func(Func::with_code(code, vec![c]));
        expect_err(
            &s.build(),
            &format!("{}.Function.instructions[{k}].{operand}", iv(fi)),
            msg,
        );
    }
}

#[test]
fn unknown_opcodes_built() {
    for opcode in [51i8, 99, 127, -1, -128] {
        let mut s = Spec::base();
        let fi = s.method(Func::with_code(&[(opcode, 0, 0)], vec![]));
        expect_err(
            &s.build(),
            &format!("{}.Function.instructions[0].op", iv(fi)),
            &format!("unknown opcode {opcode}"),
        );
    }
}

// ---------------------------------------------------------------------------------
// Tensors and storages

#[test]
fn tensors_that_do_not_fit_their_storage() {
    // Storage 0 holds 16 bytes = 4 float32.
    let tensor = |tweak: &dyn Fn(&mut Tm)| {
        let (mut s, r) = Spec::rich();
        let mut t = Tm::floats(0, 4);
        tweak(&mut t);
        s.ivalues[r.tensor as usize] = V::Tensor(t);
        (s.build(), format!("{}.TensorMetadata", iv(r.tensor)))
    };
    let (b, f) = tensor(&|_| {});
    read(&b).expect("4 floats in 16 bytes fit");
    let (b, f2) = tensor(&|t| t.storage = 0);
    assert_eq!(f, f2);
    read(&b).unwrap();

    let needs: &[(TmTweak, &str)] = &[
        (
            &|t| t.sizes = vec![5],
            "storage 0: view (offset 0, sizes [5], strides [1]) reaches outside its storage of 4 elements (it needs 5 elements)",
        ),
        (
            &|t| {
                t.offset = 3;
                t.sizes = vec![2];
            },
            "needs 5 elements",
        ),
        (
            &|t| {
                t.sizes = vec![3];
                t.strides = vec![2];
            },
            "needs 5 elements",
        ),
        (&|t| t.scalar_type = 7, "storage of 2 elements"), // float64: 16 bytes = 2 elements
        (
            &|t| {
                t.sizes = vec![i32::MAX, i32::MAX];
                t.strides = vec![i32::MAX, 1];
            },
            "needs",
        ),
        (
            &|t| {
                t.offset = i32::MAX;
                t.sizes = vec![1];
            },
            "needs 2147483648 elements",
        ),
    ];
    for (tweak, msg) in needs {
        let (b, f) = tensor(*tweak);
        let e = expect_err(&b, &format!("{f}.storage_location_index"), msg);
        assert_eq!(e.rule, rules::STORAGE);
    }
    let bad: &[(TmTweak, &str, &str)] = &[
        (&|t| t.sizes = vec![-1], ".sizes[0]", "negative size -1"),
        (
            &|t| {
                t.sizes = vec![2, 2];
                t.strides = vec![1, i32::MIN];
            },
            ".strides[1]",
            "negative stride",
        ),
        (
            &|t| t.offset = -1,
            ".storage_offset",
            "negative storage offset -1",
        ),
        (&|t| t.strides = vec![], ".strides", "1 sizes but 0 strides"),
        (
            &|t| t.storage = 1,
            ".storage_location_index",
            "storage_location_index 1 is out of range (1 storages)",
        ),
        (
            &|t| t.scalar_type = 99,
            ".scalar_type",
            "unknown scalar type 99",
        ),
        (
            &|t| t.scalar_type = -1,
            ".scalar_type",
            "unknown scalar type -1",
        ),
        (
            &|t| {
                t.scalar_type = 12;
                t.qscheme = Some(9);
            },
            ".quantized_schema.qscheme",
            "unknown qscheme 9",
        ),
        (
            &|t| {
                t.scalar_type = 12;
                t.qscheme = Some(-3);
            },
            ".quantized_schema.qscheme",
            "unknown qscheme -3",
        ),
    ];
    for (tweak, suffix, msg) in bad {
        let (b, f) = tensor(*tweak);
        expect_err(&b, &format!("{f}{suffix}"), msg);
    }
    // No storage_data at all.
    let (mut s, r) = Spec::rich();
    s.storages.clear();
    expect_err(
        &s.build(),
        &format!("{}.TensorMetadata.storage_location_index", iv(r.tensor)),
        "out of range (0 storages)",
    );
}

// ---------------------------------------------------------------------------------
// Cycles, nesting, functions used as values

#[test]
fn containers_that_contain_themselves() {
    let mut s = Spec::base();
    let n = s.ivalues.len() as u32;
    s.attr(V::List(vec![n]));
    expect_err(
        &s.build(),
        &format!("{}.List.items[0]", iv(n)),
        "ivalue 2 contains itself",
    );

    // A -> B -> A (List -> Tuple -> List).
    let mut s = Spec::base();
    let a = s.ivalues.len() as u32;
    s.attr(V::List(vec![a + 1]));
    s.push(V::Tuple(vec![a]));
    expect_err(
        &s.build(),
        &format!("{}.Tuple.items[0]", iv(a + 1)),
        "contains itself",
    );

    // A -> B -> C -> A through a dict value, a tuple and an enum.
    let mut s = Spec::base();
    let k = s.push(V::Str("k"));
    let a = s.ivalues.len() as u32;
    s.attr(V::Dict(vec![k], vec![a + 1]));
    s.push(V::Tuple(vec![a + 2]));
    s.push(V::Enum(a));
    assert_eq!(s.ivalues.len() as u32, a + 3);
    expect_err(
        &s.build(),
        &format!("{}.EnumValue.value", iv(a + 2)),
        "contains itself",
    );

    // The root object is its own attribute; and an object reached through another.
    let mut s = Spec::base();
    s.attr_ref(1);
    expect_err(
        &s.build(),
        &format!("{}.Object.attrs[0]", iv(1)),
        "ivalue 1 contains itself",
    );
    let mut s = Spec::base();
    s.types
        .push(("__torch__.Sub", CLASS_WITH_FIELD, vec!["parent".into()]));
    s.attr(V::Object(Obj {
        type_index: 1,
        attrs: Some(vec![1]),
        ..Obj::default()
    }));
    expect_err(
        &s.build(),
        &format!("{}.Object.attrs[0]", iv(2)),
        "ivalue 1 contains itself",
    );
}

#[test]
fn a_function_used_as_a_value() {
    let mut s = Spec::base();
    let f = s.method(Func::with_code(&[], vec![]));
    s.attr_ref(f);
    expect_err(
        &s.build(),
        &format!("{}.Object.attrs[0]", iv(1)),
        "is a Function, used where a value is expected",
    );
    let mut s = Spec::base();
    let f = s.push(V::Func(Func::with_code(&[], vec![])));
    let l = s.attr(V::List(vec![f]));
    expect_err(
        &s.build(),
        &format!("{}.List.items[0]", iv(l)),
        "is a Function",
    );
    let mut s = Spec::base();
    let f = s.push(V::Func(Func::with_code(&[], vec![])));
    s.state_obj = f;
    expect_err(&s.build(), "Module.state_obj", "is a Function");
}

/// Runs `f` on a thread with the default 2 MiB stack (what `std::thread::spawn` and
/// the test harness give) and returns its result.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .expect("no panic or stack overflow")
}

#[test]
fn deeply_nested_lists_are_rejected_quickly() {
    // Root attr -> list 2 -> list 3 -> ... -> list n+1 (empty).
    let parents_first = |n: u32| {
        let mut s = Spec::base();
        for i in 0..n {
            let next = s.ivalues.len() as u32 + 1;
            if i == 0 {
                s.attr(V::List(vec![next]));
            } else if i == n - 1 {
                s.push(V::List(vec![]));
            } else {
                s.push(V::List(vec![next]));
            }
        }
        s.build()
    };
    // The same nesting built children first (PyTorch's post-order), the deepest last.
    let children_first = |n: u32| {
        let mut s = Spec::base();
        s.push(V::List(vec![]));
        for _ in 1..n {
            let prev = s.ivalues.len() as u32 - 1;
            s.push(V::List(vec![prev]));
        }
        s.attr_ref(s.ivalues.len() as u32 - 1);
        s.build()
    };
    for (order, build) in [
        ("parents first", &parents_first as &dyn Fn(u32) -> Vec<u8>),
        ("children first", &children_first),
    ] {
        let b = build(100_000);
        let e = on_small_stack(move || read(&b).err()).expect("10^5 nested lists are rejected");
        assert!(e.message.contains("nested deeper than"), "{order}: {e}");
        if order == "parents first" {
            assert!(e.location.record.ends_with(".List.items[0]"), "{e}");
        }
        // Rejection stops at the depth limit: 10x the nesting is not 100x the work
        // (the file itself is 10x bigger, so the ratio allows for reading it).
        let (small, large) = (build(10_000), build(100_000));
        common::assert_growth(order, 10_000, 100_000, 20.0, |n| {
            let b = if n == 10_000 {
                small.clone()
            } else {
                large.clone()
            };
            on_small_stack(move || read(&b).is_err())
        });
    }
}

#[test]
fn moderate_nesting_is_accepted() {
    // 500 levels: deeper than any real model, within the limit, on a small stack.
    let mut s = Spec::base();
    let mut prev = s.push(V::List(vec![]));
    for _ in 1..500 {
        prev = s.push(V::List(vec![prev]));
    }
    s.attr_ref(prev);
    let b = s.build();
    on_small_stack(move || read(&b).map(|_| ()).map_err(|e| e.to_string())).unwrap();
}

#[test]
fn long_chains_through_setstate_functions_are_bounded() {
    // Object_i (CLASS_WITH_SETSTATE) -> __setstate__ F_i -> constant Object_{i+1}
    // -> F_{i+1} -> ...: every hop goes through a function, whose constants a naive
    // reader reads with a fresh depth.
    let chain = |n: u32| {
        let mut s = Spec::base();
        s.types[0].1 = CLASS_WITH_SETSTATE;
        // ivalues: [NONE, O_0, F_0, O_1, F_1, ...]; the last object's function has no constants.
        s.ivalues.truncate(1);
        for i in 0..n {
            let o = 1 + 2 * i;
            let next = if i + 1 < n { vec![o + 2] } else { vec![] };
            s.ivalues.push(V::Object(Obj {
                type_index: 0,
                attrs: None,
                state: 0,
                setstate_func: o + 1,
            }));
            s.ivalues.push(V::Func(Func::with_code(&[], next)));
        }
        s.state_obj = 1;
        s.build()
    };
    let b = chain(20_000);
    let r = on_small_stack(move || read(&b).err());
    let e = r.expect("a 40 000-deep chain is rejected");
    assert!(e.message.contains("nested deeper than"), "{e}");
    let (small, large) = (chain(2_000), chain(20_000));
    common::assert_growth("setstate chain", 2_000, 20_000, 20.0, |n| {
        let b = if n == 2_000 {
            small.clone()
        } else {
            large.clone()
        };
        on_small_stack(move || read(&b).is_err())
    });
}

// ---------------------------------------------------------------------------------
// Random damage: no panic, bounded time

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_byte_damage_never_panics() {
    // More rounds on demand: PTCONFORM_FB_FUZZ_ROUNDS=100000 cargo test …
    let rounds: usize = std::env::var("PTCONFORM_FB_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut worst = Duration::ZERO;
    let mut rejected = 0usize;
    let mut total = 0usize;
    for (name, seed) in [
        ("linear.ptl", 0x9e37_79b9_7f4a_7c15u64),
        ("containers.ptl", 0xd1b5_4a32_d192_ed03),
        ("getstate.ptl", 0x8cb9_2ba7_2f3d_8dd7),
        (ATTRS, 0x2545_f491_4f6c_dd1d),
    ] {
        let b0 = corpus_bytes(name);
        // The yardstick: a whole read of the undamaged file (best of three). Damage
        // may cost more than that, never a hundred times more.
        let whole = (0..3)
            .map(|_| {
                let t = Instant::now();
                read(&b0).expect("the undamaged file reads");
                t.elapsed()
            })
            .min()
            .unwrap();
        let allowed = whole * 100 + Duration::from_millis(200);
        let mut rng = Rng(seed);
        for round in 0..rounds {
            let mut b = b0.clone();
            // 1 to 4 changes: a random byte, or a small/huge little-endian word.
            for _ in 0..1 + rng.below(4) {
                let p = rng.below(b.len());
                match rng.below(4) {
                    0 => b[p] = rng.next() as u8,
                    1 => b[p] ^= 1 << rng.below(8),
                    2 if p + 4 <= b.len() => {
                        let w = [0u32, 1, 0xffff_ffff, 0x7fff_ffff, 0x8000_0000, 17][rng.below(6)];
                        put_u32(&mut b, p, w);
                    }
                    _ => b[p] = b[p].wrapping_add(1),
                }
            }
            let t0 = Instant::now();
            let r = std::panic::catch_unwind(|| read(&b));
            let took = t0.elapsed();
            worst = worst.max(took);
            match r {
                Err(_) => {
                    let path = std::env::temp_dir().join(format!("fb_panic_{name}_{round}"));
                    std::fs::write(&path, &b).unwrap();
                    panic!(
                        "{name} round {round}: panic (input saved to {})",
                        path.display()
                    );
                }
                Ok(Err(e)) => {
                    rejected += 1;
                    assert!(!e.location.record.is_empty(), "{e}");
                }
                Ok(Ok(_)) => {}
            }
            total += 1;
            assert!(
                took <= allowed,
                "{name} round {round} took {took:?}, a whole read {whole:?}"
            );
        }
    }
    eprintln!("{rejected}/{total} damaged inputs rejected, slowest read {worst:?}");
    assert!(
        rejected > total / 4,
        "suspiciously few rejections: {rejected}/{total}"
    );
}

// ---------------------------------------------------------------------------------
// The CLI

#[test]
fn check_reports_malformed_flatbuffers() {
    let dir = tempfile::tempdir().unwrap();
    let ok = common::corpus("linear.ptl");
    let (code, out, err) = common::run_cli(&["check", ok.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");

    let mut cases: Vec<(Vec<u8>, String)> = Vec::new();
    let mut b = corpus_bytes("linear.ptl");
    let len = b.len() as u32;
    put_u32(&mut b, 0, len + 8);
    cases.push((b, "Module".into()));
    let mut s = Spec::base();
    s.methods = vec![99];
    cases.push((s.build(), "Module.methods[0]".into()));
    let mut s = Spec::base();
    let n = s.ivalues.len() as u32;
    s.attr(V::List(vec![n]));
    cases.push((s.build(), format!("{}.List.items[0]", iv(n))));
    let (mut s, r) = Spec::rich();
    s.ivalues[r.tensor as usize] = V::Tensor(Tm::floats(0, 9));
    cases.push((
        s.build(),
        format!("{}.TensorMetadata.storage_location_index", iv(r.tensor)),
    ));
    let mut s = Spec::base();
    let fi = s.method(Func::with_code(&[(op::LOADC, 0, 4)], vec![]));
    cases.push((s.build(), format!("{}.Function.instructions[0].x", iv(fi))));

    for (k, (bytes, field)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("bad{k}.ptl"));
        std::fs::write(&path, &bytes).unwrap();
        let (code, out, err) = common::run_cli(&["check", path.to_str().unwrap()]);
        assert_eq!(code, 1, "case {k}: {out}{err}");
        assert!(
            out.contains(&format!("\"{field}")),
            "case {k}: expected field {field:?} in {out}{err}"
        );
        assert!(
            out.contains("flatbuffer") || out.contains("storage"),
            "{out}"
        );
    }
}

/// The zip side's extra-file name rule holds for flatbuffers too (`convert` turns each
/// name into `extra/NAME`, `extra --out-dir` into a path), and a name may appear once.
#[test]
fn flatbuffer_extra_file_names_follow_the_zip_rule() {
    let base = read(&corpus_bytes("linear.ptl")).unwrap();
    let with_names = |names: &[&str]| {
        let mut m = base.clone();
        m.extra_files = names
            .iter()
            .map(|n| (n.to_string(), Bytes::from_static(b"x")))
            .collect();
        let b = ptconform::flatbuffer::write::write_flatbuffer(&m, &Default::default()).unwrap();
        ptconform::check::check_flatbuffer(&Bytes::from(b))
    };
    assert!(with_names(&["a", "dir/b.txt"]).is_empty());
    for (names, at, says) in [
        (&["../escape"][..], 0, "escape"),
        (&["/abs"][..], 0, "escape"),
        (&["a//b"][..], 0, "empty path component"),
        (&["ok", "ok"][..], 1, "a second extra file"),
    ] {
        let v = with_names(names);
        let f = v
            .iter()
            .find(|f| f.rule == rules::EXTRA_NAME)
            .unwrap_or_else(|| panic!("{names:?}: {v:?}"));
        assert_eq!(f.location.record, format!("Module.extra_files[{at}].name"));
        assert!(f.message.contains(says), "{names:?}: {f}");
    }
}

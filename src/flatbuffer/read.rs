//! Reading `PTMF` flatbuffers into the shared model. The buffer is verified (with
//! depth/table/size limits) before anything is touched; then every cross-reference
//! (ivalue, type, storage, operator, constant, register indices, union tags) is checked
//! and an out-of-range one is an error naming the field.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use flatbuffers::{ForwardsUOffset, Vector, VerifierOptions};
use indexmap::IndexMap;

use super::generated::mobile_bytecode as fb;
use super::support;
use crate::error::{FormatError, rules};
use crate::model::bytecode::{
    Arg, BytecodeFunction, FunctionSchema, Instruction, ModuleInfo, OpCode, Operator,
};
use crate::model::{
    CompilationUnit, Device, Dict, EnumValue, IValue, List, Object, ObjectState, QScheme,
    QualifiedName, Quantization, ScalarType, ScriptModule, SourceFile, Storage, Str, Tensor, Tuple,
    TypeExpr,
};

/// The identifier at bytes 4..8 of every mobile flatbuffer.
pub const IDENTIFIER: &[u8; 4] = b"PTMF";

/// Deepest value nesting accepted (as for pickles).
const MAX_DEPTH: u32 = 1000;

/// Whether `data` is a mobile flatbuffer (PyTorch's test: `PTMF` at offset 4).
pub fn is_flatbuffer(data: &[u8]) -> bool {
    data.len() >= 8 && &data[4..8] == IDENTIFIER
}

/// The `TypeType` of an `ObjectType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Unset,
    ClassWithField,
    CustomClass,
    ClassWithSetstate,
    NonObj,
}

#[derive(Clone, Debug)]
pub struct ObjectTypeInfo {
    pub type_name: String,
    pub kind: ObjectKind,
    pub attr_names: Vec<String>,
}

/// A mobile module as read from a flatbuffer.
#[derive(Clone, Debug)]
pub struct MobileModule {
    /// The module in the shared model: root object, the types of `jit_sources`, tensor
    /// constants (`jit_constants`), and all extra files.
    pub module: ScriptModule,
    pub bytecode_version: u32,
    pub operator_version: u32,
    /// The root module's methods, in method order.
    pub methods: Vec<Arc<BytecodeFunction>>,
    /// Every function among the mobile ivalues (what module info reports on).
    pub functions: Vec<Arc<BytecodeFunction>>,
    pub object_types: Vec<ObjectTypeInfo>,
    /// Extra files in file order.
    pub extra_files: Vec<(String, Bytes)>,
    /// `(qualifier, source)` in file order.
    pub jit_sources: Vec<(String, String)>,
    pub mobile_ivalue_size: u32,
    pub storage_count: usize,
}

impl MobileModule {
    pub fn module_info(&self) -> ModuleInfo {
        ModuleInfo::new(
            self.bytecode_version,
            self.operator_version,
            self.functions.iter().map(|f| f.as_ref()),
        )
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> FormatError {
    FormatError::new(rules::FLATBUFFER, field, None, message)
}

/// Verifier limits: generous for real models, bounded for hostile ones.
fn verifier_options(len: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: 64,
        max_tables: (len / 4).max(1024),
        max_apparent_size: 1 << 31,
        ignore_missing_null_terminator: false,
    }
}

struct Reader<'a> {
    buf: &'a Bytes,
    ivalues: Vector<'a, ForwardsUOffset<fb::IValue<'a>>>,
    object_types: Vec<ObjectTypeInfo>,
    storage_data: Option<Vector<'a, ForwardsUOffset<fb::StorageData<'a>>>>,
    values: Vec<Option<IValue>>,
    in_progress: Vec<bool>,
    functions: HashMap<u32, Arc<BytecodeFunction>>,
    storages: HashMap<(u32, ScalarType), Arc<Storage>>,
    map_location: Option<Device>,
}

/// Reads a mobile flatbuffer. `buf` is shared: tensor storages borrow from it.
pub fn read_flatbuffer(
    buf: &Bytes,
    map_location: Option<Device>,
) -> Result<MobileModule, FormatError> {
    if !is_flatbuffer(buf) {
        return Err(err(
            "identifier",
            "bytes 4..8 are not \"PTMF\": not a mobile flatbuffer",
        ));
    }
    let opts = verifier_options(buf.len());
    let m = fb::root_as_module_with_opts(&opts, buf)
        .map_err(|e| err("Module", format!("flatbuffer verification failed: {e}")))?;
    let ivalues = m
        .ivalues()
        .ok_or_else(|| err("Module.ivalues", "missing"))?;
    // The generated verifier accepts unknown union tags and does not look inside the
    // struct members of the union: check both here, before any value is read.
    for (i, iv) in ivalues.iter().enumerate() {
        support::check_ivalue_union(buf, &iv)
            .map_err(|e| err(format!("Module.ivalues[{i}]"), e))?;
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
    let n = ivalues.len();
    let mut r = Reader {
        buf,
        ivalues,
        object_types,
        storage_data: m.storage_data(),
        values: vec![None; n],
        in_progress: vec![false; n],
        functions: HashMap::new(),
        storages: HashMap::new(),
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
    for (k, idx) in m
        .methods()
        .map(|v| v.iter().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        methods.push(r.function(idx, &format!("Module.methods[{k}]"))?);
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
    let root = match r.value(m.state_obj(), "Module.state_obj", 0)? {
        IValue::Object(o) => o,
        other => {
            return Err(err(
                "Module.state_obj",
                format!("is a {}, not an object", other.kind_name()),
            ));
        }
    };
    let mut constants = Vec::new();
    for (k, idx) in m
        .jit_constants()
        .map(|v| v.iter().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        constants.push(r.value(idx, &format!("Module.jit_constants[{k}]"), 0)?);
    }
    let extra_files = pairs(buf, m.extra_files(), "Module.extra_files")?;
    let jit_sources = pairs(buf, m.jit_sources(), "Module.jit_sources")?
        .into_iter()
        .enumerate()
        .map(|(k, (q, text))| match String::from_utf8(text.to_vec()) {
            Ok(text) => Ok((q, text)),
            Err(e) => Err(err(
                format!("Module.jit_sources[{k}].content"),
                format!("source text is not UTF-8: {e}"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut cu = CompilationUnit::new();
    for (k, (qualifier, text)) in jit_sources.iter().enumerate() {
        let defs = crate::code::parse_source(qualifier, text).map_err(|e| {
            FormatError::new(
                rules::CODE_SYNTAX,
                format!("Module.jit_sources[{k}] ({qualifier})"),
                None,
                e.to_string(),
            )
        })?;
        let names = defs.iter().map(|d| d.name().clone()).collect();
        for d in defs {
            if let Err(name) = cu.define(d) {
                return Err(FormatError::new(
                    rules::TYPE_REDEFINED,
                    format!("Module.jit_sources[{k}]"),
                    None,
                    format!("{name} is defined twice"),
                ));
            }
        }
        cu.files.push(SourceFile {
            qualifier: qualifier.clone(),
            text: text.clone(),
            debug_pkl: None,
            definitions: names,
        });
    }
    let module = ScriptModule {
        root,
        cu: Arc::new(cu),
        constants,
        extra_files: extra_files.iter().cloned().collect::<IndexMap<_, _>>(),
        memoized: None,
    };
    Ok(MobileModule {
        module,
        bytecode_version: m.bytecode_version(),
        operator_version: m.operator_version(),
        methods,
        functions,
        object_types: r.object_types,
        extra_files,
        jit_sources,
        mobile_ivalue_size,
        storage_count,
    })
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
                    let bytes = c.bytes();
                    let start = bytes.as_ptr() as usize - buf.as_ptr() as usize;
                    let end = start + bytes.len();
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

impl<'a> Reader<'a> {
    fn ivalue(&self, idx: u32, field: &str) -> Result<fb::IValue<'a>, FormatError> {
        if (idx as usize) >= self.ivalues.len() {
            return Err(err(
                field,
                format!(
                    "ivalue index {idx} is out of range (there are {})",
                    self.ivalues.len()
                ),
            ));
        }
        Ok(self.ivalues.get(idx as usize))
    }

    fn value(&mut self, idx: u32, field: &str, depth: u32) -> Result<IValue, FormatError> {
        if depth > MAX_DEPTH {
            return Err(err(
                field,
                format!("values nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let iv = self.ivalue(idx, field)?;
        let i = idx as usize;
        if let Some(v) = &self.values[i] {
            return Ok(v.clone());
        }
        if self.in_progress[i] {
            return Err(err(
                field,
                format!("ivalue {idx} contains itself (a reference cycle)"),
            ));
        }
        self.in_progress[i] = true;
        let v = self.convert(&iv, idx, field, depth)?;
        self.in_progress[i] = false;
        self.values[i] = Some(v.clone());
        Ok(v)
    }

    fn items(
        &mut self,
        v: Option<Vector<'a, u32>>,
        field: &str,
        depth: u32,
    ) -> Result<Vec<IValue>, FormatError> {
        let Some(v) = v else { return Ok(Vec::new()) };
        v.iter()
            .enumerate()
            .map(|(k, idx)| self.value(idx, &format!("{field}[{k}]"), depth + 1))
            .collect()
    }

    fn convert(
        &mut self,
        iv: &fb::IValue<'a>,
        idx: u32,
        field: &str,
        depth: u32,
    ) -> Result<IValue, FormatError> {
        let here = format!("Module.ivalues[{idx}]");
        use fb::IValueUnion as U;
        Ok(match iv.val_type() {
            U::NONE => IValue::None,
            U::Int => {
                IValue::Int(support::read_int(iv).ok_or_else(|| err(&here, "Int value missing"))?)
            }
            U::Bool => IValue::Bool(
                support::read_bool(iv).ok_or_else(|| err(&here, "Bool value missing"))?,
            ),
            U::Double => IValue::Double(
                support::read_double(iv).ok_or_else(|| err(&here, "Double value missing"))?,
            ),
            U::ComplexDouble => {
                let (re, im) = support::read_complex(iv)
                    .ok_or_else(|| err(&here, "ComplexDouble value missing"))?;
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
                        .map_err(|e| err(format!("{here}.Device.str"), e.to_string()))?,
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
                    .ok_or_else(|| err(&here, "List table missing"))?;
                let ann = l.annotation_str().unwrap_or("List[Any]");
                let ty = TypeExpr::parse(ann)
                    .map_err(|e| err(format!("{here}.List.annotation_str"), e.to_string()))?;
                let elem = match (ty.head(), ty.args()) {
                    ("List", [e]) => e.clone(),
                    _ => {
                        return Err(err(
                            format!("{here}.List.annotation_str"),
                            format!("{ann:?} is not a List type"),
                        ));
                    }
                };
                let items = self.items(l.items(), &format!("{here}.List.items"), depth)?;
                IValue::List(Arc::new(List {
                    elem_type: elem,
                    items,
                }))
            }
            U::Tuple => {
                let t = iv
                    .val_as_tuple()
                    .ok_or_else(|| err(&here, "Tuple table missing"))?;
                let items = self.items(t.items(), &format!("{here}.Tuple.items"), depth)?;
                IValue::Tuple(Arc::new(Tuple { items, named: None }))
            }
            U::Dict => {
                let d = iv
                    .val_as_dict()
                    .ok_or_else(|| err(&here, "Dict table missing"))?;
                let ann = d.annotation_str().unwrap_or("Dict[Any, Any]");
                let ty = TypeExpr::parse(ann)
                    .map_err(|e| err(format!("{here}.Dict.annotation_str"), e.to_string()))?;
                let (k, v) = match (ty.head(), ty.args()) {
                    ("Dict", [k, v]) => (k.clone(), v.clone()),
                    _ => {
                        return Err(err(
                            format!("{here}.Dict.annotation_str"),
                            format!("{ann:?} is not a Dict type"),
                        ));
                    }
                };
                let keys = self.items(d.keys(), &format!("{here}.Dict.keys"), depth)?;
                let values = self.items(d.values(), &format!("{here}.Dict.values"), depth)?;
                if keys.len() != values.len() {
                    return Err(err(
                        &here,
                        format!("Dict has {} keys but {} values", keys.len(), values.len()),
                    ));
                }
                IValue::Dict(Arc::new(Dict {
                    key_type: k,
                    value_type: v,
                    entries: keys.into_iter().zip(values).collect(),
                }))
            }
            U::Object => self.object(iv, &here, depth)?,
            U::EnumValue => {
                let e = iv
                    .val_as_enum_value()
                    .ok_or_else(|| err(&here, "EnumValue table missing"))?;
                let name = e
                    .type_name()
                    .ok_or_else(|| err(format!("{here}.EnumValue.type_name"), "missing"))?;
                let value = self.value(e.value(), &format!("{here}.EnumValue.value"), depth + 1)?;
                IValue::Enum(Arc::new(EnumValue {
                    enum_type: QualifiedName::new(name),
                    value,
                }))
            }
            U::TensorMetadata => {
                let t = iv
                    .val_as_tensor_metadata()
                    .ok_or_else(|| err(&here, "TensorMetadata table missing"))?;
                IValue::Tensor(Arc::new(self.tensor(
                    &t,
                    &format!("{here}.TensorMetadata"),
                    depth,
                )?))
            }
            U::Function => {
                return Err(err(
                    field,
                    format!("ivalue {idx} is a Function, used where a value is expected"),
                ));
            }
            other => return Err(err(&here, format!("unknown IValue union tag {}", other.0))),
        })
    }

    fn object(
        &mut self,
        iv: &fb::IValue<'a>,
        here: &str,
        depth: u32,
    ) -> Result<IValue, FormatError> {
        let o = iv
            .val_as_object()
            .ok_or_else(|| err(here, "Object table missing"))?;
        let ti = o.type_index() as usize;
        let ty = self.object_types.get(ti).cloned().ok_or_else(|| {
            err(
                format!("{here}.Object.type_index"),
                format!(
                    "{ti} is out of range ({} object types)",
                    self.object_types.len()
                ),
            )
        })?;
        let state = match ty.kind {
            ObjectKind::ClassWithField | ObjectKind::Unset => {
                let attrs = o
                    .attrs()
                    .map(|v| v.iter().collect::<Vec<_>>())
                    .unwrap_or_default();
                if attrs.len() != ty.attr_names.len() {
                    return Err(FormatError::new(
                        rules::FLATBUFFER_TYPES,
                        format!("{here}.Object.attrs"),
                        None,
                        format!(
                            "object of {} has {} attributes but its ObjectType names {} (PyTorch's flatbuffer writer merges distinct classes that share a name; torch.jit.load crashes on such files)",
                            ty.type_name,
                            attrs.len(),
                            ty.attr_names.len()
                        ),
                    ));
                }
                let mut out = Vec::with_capacity(attrs.len());
                for (k, (idx, name)) in attrs.into_iter().zip(&ty.attr_names).enumerate() {
                    let v = self.value(idx, &format!("{here}.Object.attrs[{k}]"), depth + 1)?;
                    out.push((Str::from(name.as_str()), v));
                }
                ObjectState::Attributes(out)
            }
            ObjectKind::ClassWithSetstate => {
                // The __setstate__ function must exist, the state is any value.
                let f = o.setstate_func();
                self.function(f, &format!("{here}.Object.setstate_func"))?;
                ObjectState::SetState(self.value(
                    o.state(),
                    &format!("{here}.Object.state"),
                    depth + 1,
                )?)
            }
            ObjectKind::CustomClass | ObjectKind::NonObj => {
                return Err(err(
                    here,
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
        field: &str,
    ) -> Result<Arc<Storage>, FormatError> {
        if let Some(s) = self.storages.get(&(index, dtype)) {
            return Ok(s.clone());
        }
        let data = self.storage_data.ok_or_else(|| {
            err(
                field,
                "tensor refers to storage data but Module.storage_data is missing",
            )
        })?;
        if index as usize >= data.len() {
            return Err(err(
                field,
                format!(
                    "storage_location_index {index} is out of range ({} storages)",
                    data.len()
                ),
            ));
        }
        let bytes = data
            .get(index as usize)
            .data()
            .map(|v| v.bytes())
            .unwrap_or(&[]);
        // Zero-copy: the storage is a slice of the caller's buffer.
        let start = bytes.as_ptr() as usize - self.buf.as_ptr() as usize;
        let slice = self.buf.slice(start..start + bytes.len());
        let esize = dtype.element_size() as usize;
        let numel = (slice.len() / esize) as u64;
        let device = self.map_location.clone().unwrap_or_else(Device::cpu);
        let s = Arc::new(Storage {
            dtype,
            device,
            numel,
            data: slice,
        });
        self.storages.insert((index, dtype), s.clone());
        Ok(s)
    }

    fn tensor(
        &mut self,
        t: &fb::TensorMetadata<'a>,
        field: &str,
        depth: u32,
    ) -> Result<Tensor, FormatError> {
        if depth > MAX_DEPTH {
            return Err(err(field, "tensor metadata nested too deeply"));
        }
        let dtype = ScalarType::from_number(t.scalar_type() as i64).ok_or_else(|| {
            err(
                format!("{field}.scalar_type"),
                format!("unknown scalar type {}", t.scalar_type()),
            )
        })?;
        let quantization = match t.quantized_schema() {
            None => None,
            Some(q) => {
                let scheme = QScheme::ALL
                    .get(q.qscheme() as usize)
                    .copied()
                    .ok_or_else(|| {
                        err(
                            format!("{field}.quantized_schema.qscheme"),
                            format!("unknown qscheme {}", q.qscheme()),
                        )
                    })?;
                if scheme.is_per_channel() {
                    let scales = q.scales().ok_or_else(|| {
                        err(format!("{field}.quantized_schema.scales"), "missing")
                    })?;
                    let zps = q.zero_points().ok_or_else(|| {
                        err(format!("{field}.quantized_schema.zero_points"), "missing")
                    })?;
                    Some(Quantization::PerChannel {
                        scheme,
                        scales: Arc::new(self.tensor(
                            &scales,
                            &format!("{field}.quantized_schema.scales"),
                            depth + 1,
                        )?),
                        zero_points: Arc::new(self.tensor(
                            &zps,
                            &format!("{field}.quantized_schema.zero_points"),
                            depth + 1,
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
            &format!("{field}.storage_location_index"),
        )?;
        let sizes: Vec<i64> = t
            .sizes()
            .map(|v| v.iter().map(i64::from).collect())
            .unwrap_or_default();
        let strides: Vec<i64> = t
            .strides()
            .map(|v| v.iter().map(i64::from).collect())
            .unwrap_or_default();
        let tensor = Tensor {
            storage,
            storage_offset: t.storage_offset() as i64,
            sizes,
            strides,
            requires_grad: t.requires_grad(),
            conj: false,
            neg: false,
            quantization,
        };
        if tensor.sizes.len() != tensor.strides.len() {
            return Err(err(
                field,
                format!(
                    "{} sizes but {} strides",
                    tensor.sizes.len(),
                    tensor.strides.len()
                ),
            ));
        }
        match tensor.storage_extent() {
            Err(()) => return Err(err(field, "invalid view (negative size or offset)")),
            Ok(Some((lo, hi))) if lo < 0 || hi > tensor.storage.numel as i128 => {
                return Err(FormatError::new(
                    rules::STORAGE,
                    format!("{field}.storage_location_index"),
                    None,
                    format!(
                        "view (offset {}, sizes {:?}, strides {:?}) needs {hi} elements but storage {} holds {}",
                        tensor.storage_offset,
                        tensor.sizes,
                        tensor.strides,
                        t.storage_location_index(),
                        tensor.storage.numel
                    ),
                ));
            }
            Ok(_) => {}
        }
        Ok(tensor)
    }

    fn function(&mut self, idx: u32, field: &str) -> Result<Arc<BytecodeFunction>, FormatError> {
        if let Some(f) = self.functions.get(&idx) {
            return Ok(f.clone());
        }
        let iv = self.ivalue(idx, field)?;
        let here = format!("Module.ivalues[{idx}].Function");
        let f = iv
            .val_as_function()
            .ok_or_else(|| err(field, format!("ivalue {idx} is not a Function")))?;
        let qn = f
            .qn()
            .ok_or_else(|| err(format!("{here}.qn"), "missing"))?
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
        let mut constants = Vec::new();
        for (k, c) in f
            .constants()
            .map(|v| v.iter().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            constants.push(self.value(c, &format!("{here}.constants[{k}]"), 1)?);
        }
        let type_annotations: Vec<String> = f
            .type_annotations()
            .map(|v| v.iter().map(str::to_string).collect())
            .unwrap_or_default();
        let register_size = f.register_size();
        let mut instructions = Vec::new();
        for (k, ins) in f
            .instructions()
            .map(|v| v.iter().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let at = format!("{here}.instructions[{k}]");
            let op = OpCode::from_number(ins.op() as i64)
                .ok_or_else(|| err(&at, format!("unknown opcode {}", ins.op())))?;
            let (n, x) = (ins.n(), ins.x());
            let check = |ok: bool, what: &str| {
                if ok {
                    Ok(())
                } else {
                    Err(err(&at, format!("{} {what} (n = {n}, x = {x})", op.name())))
                }
            };
            match op {
                OpCode::Op | OpCode::OpN => check(
                    x >= 0 && (x as usize) < operators.len(),
                    &format!(
                        "operator index out of range ({} operators)",
                        operators.len()
                    ),
                )?,
                OpCode::LoadC => check(
                    x >= 0 && (x as usize) < constants.len(),
                    &format!(
                        "constant index out of range ({} constants)",
                        constants.len()
                    ),
                )?,
                OpCode::Load | OpCode::Move | OpCode::Store | OpCode::DropR => check(
                    x >= 1 && x <= register_size,
                    &format!("register out of range (register_size {register_size})"),
                )?,
                OpCode::StoreN => check(
                    x >= 1 && x as i64 + n as i64 - 1 <= register_size as i64,
                    &format!("registers out of range (register_size {register_size})"),
                )?,
                OpCode::ListConstruct
                | OpCode::DictConstruct
                | OpCode::NamedTupleConstruct
                | OpCode::CreateObject => check(
                    x >= 0 && (x as usize) < type_annotations.len(),
                    &format!(
                        "type index out of range ({} type annotations)",
                        type_annotations.len()
                    ),
                )?,
                OpCode::IsInstance => check(
                    x >= 0 && x as usize + n as usize <= type_annotations.len(),
                    &format!(
                        "types out of range ({} type annotations)",
                        type_annotations.len()
                    ),
                )?,
                OpCode::InterfaceCall => check(
                    x >= 0 && (x as usize) < constants.len(),
                    &format!(
                        "method-name constant out of range ({} constants)",
                        constants.len()
                    ),
                )?,
                _ => {}
            }
            instructions.push(Instruction { op, n, x });
        }
        let schema = match f.schema() {
            None => None,
            Some(s) => {
                let mut args = |v: Option<Vector<'a, ForwardsUOffset<fb::Arg<'a>>>>,
                                what: &str|
                 -> Result<Vec<Arg>, FormatError> {
                    let mut out = Vec::new();
                    for (k, a) in v
                        .map(|v| v.iter().collect::<Vec<_>>())
                        .unwrap_or_default()
                        .into_iter()
                        .enumerate()
                    {
                        let dv = a.default_value();
                        out.push(Arg {
                            name: a.name().unwrap_or("").to_string(),
                            type_str: a.type_().unwrap_or("").to_string(),
                            default_value: if dv == 0 {
                                None
                            } else {
                                Some(self.value(
                                    dv,
                                    &format!("{here}.schema.{what}[{k}].default_value"),
                                    1,
                                )?)
                            },
                        });
                    }
                    Ok(out)
                };
                let arguments = args(s.arguments(), "arguments")?;
                let returns = args(s.returns(), "returns")?;
                Some(FunctionSchema { arguments, returns })
            }
        };
        let class_type = f.class_type();
        if !self.object_types.is_empty() && class_type as usize >= self.object_types.len() {
            return Err(err(
                format!("{here}.class_type"),
                format!(
                    "{class_type} is out of range ({} object types)",
                    self.object_types.len()
                ),
            ));
        }
        let func = Arc::new(BytecodeFunction {
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
        });
        self.functions.insert(idx, func.clone());
        Ok(func)
    }
}

fn typed_list(elem: &str, items: Vec<IValue>) -> IValue {
    IValue::List(Arc::new(List {
        elem_type: TypeExpr::name(elem),
        items,
    }))
}

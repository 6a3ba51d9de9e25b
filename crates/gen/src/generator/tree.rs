//! Random module trees: submodules (plain and container-shaped), parameters, buffers,
//! plain attributes of every kind the model holds, tensors of every dtype (views,
//! shared storages, meta), colliding class names, and extra files.
//!
//! Every choice goes through `Unstructured::int_in_range`/`choose`/`ratio`, so an
//! exhausted input yields the smallest module, and shrinking the input bytes shrinks the
//! module (proptest and cargo-fuzz use the same bytes).

use std::collections::BTreeMap;
use std::sync::Arc;

use arbitrary::Unstructured;
use bytes::Bytes;
use serde_json::{Value, json};

use super::config::Config;
use super::method;
use ptconform_core::inspect::sha256_hex;
use ptconform_core::model::compose::ModuleBuilder;
use ptconform_core::model::mangle::{KEY_SEPARATOR, NameUniquer, original_name};
use ptconform_core::model::types::{EnumDef, NamedTupleDef};
use ptconform_core::model::{
    Definition, Device, Dict, EnumValue, IValue, List, QScheme, QualifiedName, Quantization,
    ScalarType, ScriptModule, Storage, Str, Tensor, Tuple, TypeExpr,
};
use ptconform_core::zip_archive::ExtraFilesMap;

/// The dtypes PyTorch 2.15 saves and loads in both formats (bit-packed types left out).
pub const DTYPES: &[ScalarType] = &[
    ScalarType::UInt8,
    ScalarType::Int8,
    ScalarType::Int16,
    ScalarType::Int32,
    ScalarType::Int64,
    ScalarType::Float16,
    ScalarType::Float32,
    ScalarType::Float64,
    ScalarType::Complex32,
    ScalarType::Complex64,
    ScalarType::Complex128,
    ScalarType::Bool,
    ScalarType::QInt8,
    ScalarType::QUInt8,
    ScalarType::QInt32,
    ScalarType::BFloat16,
    ScalarType::Float8E5M2,
    ScalarType::Float8E4M3Fn,
    ScalarType::Float8E5M2Fnuz,
    ScalarType::Float8E4M3Fnuz,
    ScalarType::UInt16,
    ScalarType::UInt32,
    ScalarType::UInt64,
];

/// A generated module tree before its methods: the module, what each module class
/// offers to a `forward` body, and the facts a loader must report.
pub struct Tree {
    pub module: ScriptModule,
    /// Per class key: float32 `[F]` attributes, `[F, F]` attributes, children whose
    /// class has a forward, in slot order.
    pub usable: BTreeMap<QualifiedName, Usable>,
    /// Class keys in pre-order of first appearance (PyTorch's asking order).
    pub class_order: Vec<QualifiedName>,
    pub extra_files: ExtraFilesMap,
    /// How often each generated shape occurred (for coverage tests).
    pub coverage: BTreeMap<String, u32>,
    /// The `forward` body of every module class and the free functions they call.
    pub unit: method::Unit,
    modules: Vec<(String, QualifiedName)>,
    parameters: Vec<(String, Arc<Tensor>)>,
    buffers: Vec<(String, Arc<Tensor>)>,
}

#[derive(Clone, Debug, Default)]
pub struct Usable {
    pub vectors: Vec<String>,
    pub matrices: Vec<String>,
    pub children: Vec<String>,
    /// Whether this class gets a `forward` (container shapes have none).
    pub has_forward: bool,
}

struct Gen<'c> {
    cfg: &'c Config,
    flatbuffer: bool,
    classes: u32,
    /// Names used so far, with the next `#k` key number for a colliding reuse.
    names: Vec<(String, u32)>,
    /// float32 storages a later tensor may view.
    shared: Vec<Arc<Storage>>,
    coverage: BTreeMap<String, u32>,
    usable: BTreeMap<QualifiedName, Usable>,
    defs: Vec<Definition>,
    unit: method::Unit,
}

fn tensor_fact(name: &str, t: &Tensor) -> Value {
    json!({"name": name, "dtype": t.dtype().name(), "shape": t.sizes, "device": t.device().to_string()})
}

impl Tree {
    /// The `inspect --json` facts a loader must report for this module (the keys that
    /// depend only on the module: `modules`, `parameters`, `buffers`, `extra_files`),
    /// with class names as the save-time uniquer assigns them.
    pub fn expected_facts(&self) -> Value {
        let mut uniquer = NameUniquer::new();
        let mut names = BTreeMap::new();
        for key in &self.class_order {
            names.insert(key.clone(), uniquer.unique(key));
        }
        let modules: Vec<Value> = self
            .modules
            .iter()
            .map(|(path, key)| json!({"name": path, "type": names[key].as_str()}))
            .collect();
        let mut extra: Vec<Value> = self
            .extra_files
            .iter()
            .map(|(n, c)| json!({"name": n, "size": c.len(), "sha256": sha256_hex(c)}))
            .collect();
        extra.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        json!({
            "modules": modules,
            "parameters": self.parameters.iter().map(|(n, t)| tensor_fact(n, t)).collect::<Vec<_>>(),
            "buffers": self.buffers.iter().map(|(n, t)| tensor_fact(n, t)).collect::<Vec<_>>(),
            "extra_files": extra,
        })
    }
}

/// Generates a module tree. `flatbuffer` restricts it to what a flatbuffer holds.
pub fn gen_tree(u: &mut Unstructured, cfg: &Config, flatbuffer: bool) -> arbitrary::Result<Tree> {
    let cfg = if flatbuffer {
        cfg.for_flatbuffer()
    } else {
        cfg.bounded()
    };
    let mut g = Gen {
        cfg: &cfg,
        flatbuffer,
        classes: 0,
        names: Vec::new(),
        shared: Vec::new(),
        coverage: BTreeMap::new(),
        usable: BTreeMap::new(),
        defs: Vec::new(),
        unit: method::Unit::default(),
    };
    // Free functions of the unit: defined once (they travel up with the definitions of
    // the first module built), callable from every forward.
    g.unit.functions = method::gen_functions(u, "__torch__", 3, 4)?;
    for f in g.unit.functions.clone() {
        g.seen("method:function");
        g.defs
            .push(method::function_definition(&f).expect("generated functions parse"));
    }
    let mut modules = Vec::new();
    let mut parameters = Vec::new();
    let mut buffers = Vec::new();
    let (module, _) = g.module(
        u,
        0,
        String::new(),
        &mut modules,
        &mut parameters,
        &mut buffers,
        true,
    )?;
    let extra_files = g.extra_files(u)?;
    let class_order = asking_order(&module);
    Ok(Tree {
        module,
        usable: g.usable,
        class_order,
        extra_files,
        coverage: g.coverage,
        unit: g.unit,
        modules,
        parameters,
        buffers,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Plain,
    List,
    Dict,
}

impl Gen<'_> {
    fn seen(&mut self, what: impl Into<String>) {
        *self.coverage.entry(what.into()).or_default() += 1;
    }

    /// A class key: a fresh name, or (collisions on) an earlier name again, keyed
    /// `NAME#k` so it stays a distinct class.
    fn class_key(&mut self, u: &mut Unstructured, base: &str) -> arbitrary::Result<QualifiedName> {
        let same_kind: Vec<usize> = (0..self.names.len())
            .filter(|&i| {
                let n = &self.names[i].0;
                n.starts_with(base) && n[base.len()..].bytes().all(|c| c.is_ascii_digit())
            })
            .collect();
        if self.cfg.collisions && !same_kind.is_empty() && u.ratio(1, 3)? {
            let i = same_kind[u.choose_index(same_kind.len())?];
            self.names[i].1 += 1;
            let (name, next) = self.names[i].clone();
            self.seen(format!(
                "collision:{}",
                base.rsplit('.').next().unwrap_or(base)
            ));
            return Ok(QualifiedName::new(format!("{name}{KEY_SEPARATOR}{next}")));
        }
        self.classes += 1;
        let name = format!("{base}{}", self.classes);
        self.names.push((name.clone(), 0));
        Ok(QualifiedName::new(name))
    }

    #[allow(clippy::too_many_arguments)]
    fn module(
        &mut self,
        u: &mut Unstructured,
        depth: u32,
        path: String,
        modules: &mut Vec<(String, QualifiedName)>,
        parameters: &mut Vec<(String, Arc<Tensor>)>,
        buffers: &mut Vec<(String, Arc<Tensor>)>,
        is_root: bool,
    ) -> arbitrary::Result<(ScriptModule, bool)> {
        let shape = if self.cfg.containers && !is_root && u.ratio(1, 4)? {
            if u.arbitrary()? {
                Shape::List
            } else {
                Shape::Dict
            }
        } else {
            Shape::Plain
        };
        let key = match shape {
            Shape::Plain => self.class_key(u, "__torch__.M")?,
            Shape::List => self.container_key("__torch__.torch.nn.modules.container.ModuleList"),
            Shape::Dict => self.container_key("__torch__.torch.nn.modules.container.ModuleDict"),
        };
        if shape != Shape::Plain && key.as_str().contains(KEY_SEPARATOR) {
            self.seen(if shape == Shape::List {
                "collision:ModuleList"
            } else {
                "collision:ModuleDict"
            });
        }
        self.seen(match shape {
            Shape::Plain => "module:plain",
            Shape::List => "module:ModuleList",
            Shape::Dict => "module:ModuleDict",
        });
        modules.push((path.clone(), key.clone()));
        let mut b = ModuleBuilder::new(key.as_str());
        let mut usable = Usable {
            has_forward: shape == Shape::Plain,
            ..Usable::default()
        };
        let join = |n: &str| {
            if path.is_empty() {
                n.to_string()
            } else {
                format!("{path}.{n}")
            }
        };
        if shape == Shape::Plain {
            self.attributes(u, &mut b, &mut usable, &join, parameters, buffers)?;
        }
        let max_children = if depth >= self.cfg.max_depth {
            0
        } else {
            self.cfg.max_children
        };
        let n = u.int_in_range(0..=max_children)?;
        for i in 0..n {
            let name = match shape {
                Shape::List => i.to_string(),
                Shape::Dict => format!("k{i}"),
                Shape::Plain => format!("c{i}"),
            };
            let (child, has_forward) = self.module(
                u,
                depth + 1,
                join(&name),
                modules,
                parameters,
                buffers,
                false,
            )?;
            b.submodule(&name, &child);
            if has_forward && shape == Shape::Plain {
                usable.children.push(name);
            }
        }
        if shape == Shape::Plain {
            self.forward(u, &mut b, &key, &usable)?;
        }
        for d in std::mem::take(&mut self.defs) {
            b.define(d);
        }
        self.usable.insert(key, usable);
        Ok((b.build(), shape == Shape::Plain))
    }

    /// A random `forward` for the class `key`: TorchScript source in the class (its
    /// `self` typed with the key, which the save-time uniquer maps to the archive name),
    /// the body kept for the bytecode and the evaluator.
    fn forward(
        &mut self,
        u: &mut Unstructured,
        b: &mut ModuleBuilder,
        key: &QualifiedName,
        usable: &Usable,
    ) -> arbitrary::Result<()> {
        let names: Vec<&QualifiedName> = self.unit.functions.iter().map(|f| &f.name).collect();
        let offer = method::Usable {
            vectors: usable.vectors.iter().map(String::as_str).collect(),
            matrices: usable.matrices.iter().map(String::as_str).collect(),
            children: usable.children.iter().map(String::as_str).collect(),
            functions: names,
        };
        let body = method::gen_forward(u, &offer, self.cfg.max_body_nodes as usize)?;
        let mut counts = BTreeMap::new();
        body.count_kinds(&mut counts);
        for (kind, n) in counts {
            *self.coverage.entry(format!("method:{kind}")).or_default() += n as u32;
        }
        let plain = original_name(key);
        b.method_source(&method::forward_source(&plain, &body))
            .expect("generated forward bodies parse");
        if &plain != key
            && let Some(m) = b.class_mut().methods.last_mut()
            && let Some(p) = m.signature.params.first_mut()
        {
            p.ty = Some(TypeExpr::Name(key.as_str().to_string()));
        }
        self.unit.bodies.insert(key.clone(), body);
        Ok(())
    }

    /// Container classes: PyTorch gives each distinct ModuleList/ModuleDict its own
    /// (mangled) class, so every further one is a collision.
    fn container_key(&mut self, name: &str) -> QualifiedName {
        match self.names.iter_mut().find(|(n, _)| n == name) {
            Some((_, next)) => {
                *next += 1;
                QualifiedName::new(format!("{name}{KEY_SEPARATOR}{next}"))
            }
            None => {
                self.names.push((name.to_string(), 0));
                QualifiedName::new(name)
            }
        }
    }

    fn attributes(
        &mut self,
        u: &mut Unstructured,
        b: &mut ModuleBuilder,
        usable: &mut Usable,
        join: &dyn Fn(&str) -> String,
        parameters: &mut Vec<(String, Arc<Tensor>)>,
        buffers: &mut Vec<(String, Arc<Tensor>)>,
    ) -> arbitrary::Result<()> {
        let f = self.cfg.features as i64;
        // What forward bodies use: float32 [F] and [F, F] tensors, possibly views.
        for k in 0..u.int_in_range(0..=2)? {
            let t = Arc::new(self.float_tensor(u, &[f])?);
            let name = format!("v{k}");
            match u.int_in_range(0..=2)? {
                0 => {
                    b.parameter(&name, IValue::Tensor(t.clone()));
                    parameters.push((join(&name), t));
                }
                1 => {
                    b.buffer(&name, IValue::Tensor(t.clone()));
                    buffers.push((join(&name), t));
                }
                _ => {
                    b.attribute(&name, TypeExpr::name("Tensor"), IValue::Tensor(t));
                }
            }
            usable.vectors.push(name);
        }
        for k in 0..u.int_in_range(0..=1)? {
            let t = Arc::new(self.float_tensor(u, &[f, f])?);
            let name = format!("w{k}");
            b.parameter(&name, IValue::Tensor(t.clone()));
            parameters.push((join(&name), t));
            usable.matrices.push(name);
        }
        for k in 0..u.int_in_range(0..=self.cfg.max_attributes)? {
            let name = format!("a{k}");
            let (ty, value, tensor_kind) = self.value(u, 0)?;
            match (tensor_kind, &value) {
                (Some(0), IValue::Tensor(t)) => {
                    b.parameter(&name, value.clone());
                    parameters.push((join(&name), t.clone()));
                }
                (Some(1), IValue::Tensor(t)) => {
                    b.buffer(&name, value.clone());
                    buffers.push((join(&name), t.clone()));
                }
                _ => {
                    b.attribute(&name, ty, value);
                }
            }
        }
        Ok(())
    }

    /// A float32 tensor of `sizes`: fresh and contiguous, or (views on) a view into a
    /// shared storage with an offset and, for matrices, possibly transposed strides.
    fn float_tensor(&mut self, u: &mut Unstructured, sizes: &[i64]) -> arbitrary::Result<Tensor> {
        let numel: i64 = sizes.iter().product();
        if self.cfg.views && !self.shared.is_empty() && u.ratio(1, 3)? {
            let s = self.shared[u.choose_index(self.shared.len())?].clone();
            if s.numel as i64 >= numel {
                let offset = u.int_in_range(0..=(s.numel as i64 - numel))?;
                let strides = if sizes.len() == 2 && u.arbitrary()? {
                    self.seen("tensor:transposed-view");
                    smallvec::smallvec![1, sizes[0]]
                } else {
                    Tensor::contiguous_strides(sizes)
                };
                self.seen("tensor:shared-storage");
                return Ok(Tensor {
                    storage: s,
                    storage_offset: offset,
                    sizes: sizes.into(),
                    strides,
                    requires_grad: false,
                    conj: false,
                    neg: false,
                    quantization: None,
                    sparse: None,
                });
            }
        }
        // Small exact values keep forward's arithmetic comparable across implementations.
        let extra = if self.cfg.views {
            u.int_in_range(0..=3)?
        } else {
            0
        };
        let mut data = Vec::new();
        for _ in 0..numel + extra {
            let v = u.int_in_range(-8i32..=8)? as f32 / 4.0;
            data.extend(v.to_le_bytes());
        }
        let t = Tensor::contiguous(
            ScalarType::Float32,
            Device::cpu(),
            sizes.to_vec(),
            Bytes::from(data),
            false,
        );
        let t = Tensor {
            sizes: sizes.into(),
            strides: Tensor::contiguous_strides(sizes),
            ..t
        };
        if extra > 0 {
            self.seen("tensor:storage-larger-than-view");
        }
        self.shared.push(t.storage.clone());
        Ok(t)
    }

    /// Any tensor: a dtype, a shape within the element budget, random bytes (bools 0/1),
    /// quantization for the quantized dtypes, sometimes meta.
    fn any_tensor(&mut self, u: &mut Unstructured) -> arbitrary::Result<Tensor> {
        let dtype = if self.cfg.all_dtypes {
            let release = self.cfg.release;
            let known: Vec<ScalarType> = DTYPES
                .iter()
                .copied()
                .filter(|&d| release.has_dtype(d))
                .collect();
            *u.choose(&known)?
        } else {
            ScalarType::Float32
        };
        self.seen(format!("dtype:{}", dtype.name()));
        let quantized = matches!(
            dtype,
            ScalarType::QInt8 | ScalarType::QUInt8 | ScalarType::QInt32
        );
        let rank = u.int_in_range(0..=3)?;
        let mut sizes = Vec::new();
        let mut numel = 1i64;
        for _ in 0..rank {
            let max = (self.cfg.max_tensor_elements as i64 / numel).clamp(0, 6);
            // PyTorch 2.15 writes an empty quantized tensor but cannot load it back
            // ("setStorage: sizes [] ... out of bounds for storage of size 0").
            let min = if quantized { 1.min(max) } else { 0 };
            let d = u.int_in_range(min..=max.max(min))?;
            numel *= d.max(1);
            sizes.push(d);
        }
        let numel: i64 = sizes.iter().product();
        if quantized && numel == 0 {
            sizes.iter_mut().for_each(|d| *d = 1);
        }
        let numel: i64 = sizes.iter().product();
        if self.cfg.meta_tensors && !quantized && u.ratio(1, 6)? {
            self.seen("tensor:meta");
            return Ok(Tensor::contiguous(
                dtype,
                Device::meta(),
                sizes,
                Bytes::new(),
                false,
            ));
        }
        let esize = dtype.element_size() as usize;
        let mut data = u
            .bytes(numel as usize * esize)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        data.resize(numel as usize * esize, 0);
        if dtype == ScalarType::Bool {
            data.iter_mut().for_each(|b| *b &= 1);
        }
        if numel == 0 {
            self.seen("tensor:empty");
        }
        let mut t = Tensor::contiguous(
            dtype,
            Device::cpu(),
            sizes.clone(),
            Bytes::from(data),
            false,
        );
        t.strides = Tensor::contiguous_strides(&sizes);
        if quantized {
            self.seen("tensor:quantized");
            t.quantization = Some(Quantization::PerTensor {
                scheme: QScheme::PerTensorAffine,
                scale: u.int_in_range(1u32..=64)? as f64 / 32.0,
                zero_point: if dtype == ScalarType::QUInt8 {
                    u.int_in_range(0..=255)?
                } else {
                    0
                },
            });
        }
        Ok(t)
    }

    /// A plain attribute value and its declared type; for tensors also whether it is
    /// registered as a parameter (0), buffer (1) or plain attribute (2).
    fn value(
        &mut self,
        u: &mut Unstructured,
        depth: u32,
    ) -> arbitrary::Result<(TypeExpr, IValue, Option<u8>)> {
        let kinds: &[&str] = if depth > 1 {
            &["int", "float", "bool", "str"]
        } else {
            &[
                "tensor",
                "int",
                "float",
                "bool",
                "str",
                "optional",
                "list_int",
                "list_float",
                "list_bool",
                "list_str",
                "list_tensor",
                "dict",
                "tuple",
                "device",
                "enum",
                "namedtuple",
                "complex",
                "torchbind",
            ]
        };
        let kind = *u.choose(kinds)?;
        let kind = match kind {
            "enum" | "namedtuple" if self.flatbuffer || !self.cfg.enums => "int",
            "complex" if self.flatbuffer => "float",
            "torchbind" if !self.cfg.torchbind => "int",
            k => k,
        };
        self.seen(format!("attr:{kind}"));
        let list = |elem: &str, items: Vec<IValue>| {
            (
                TypeExpr::list(TypeExpr::name(elem)),
                IValue::List(Arc::new(List {
                    elem_type: TypeExpr::name(elem),
                    items,
                })),
                None,
            )
        };
        let n = u.int_in_range(0..=3)?;
        Ok(match kind {
            "tensor" => {
                let t = Arc::new(self.any_tensor(u)?);
                let role = u.int_in_range(0..=2)?;
                (TypeExpr::name("Tensor"), IValue::Tensor(t), Some(role))
            }
            "int" => (TypeExpr::name("int"), IValue::Int(u.arbitrary()?), None),
            "float" => {
                // Finite values: NaN attributes compare unequal to themselves.
                let v = u.int_in_range(-1000i32..=1000)? as f64 / 8.0;
                (TypeExpr::name("float"), IValue::Double(v), None)
            }
            "bool" => (TypeExpr::name("bool"), IValue::Bool(u.arbitrary()?), None),
            "str" => (
                TypeExpr::name("str"),
                IValue::String(Str::from(self.text(u)?)),
                None,
            ),
            "optional" => {
                let v = if u.arbitrary()? {
                    IValue::Int(u.arbitrary()?)
                } else {
                    IValue::None
                };
                (
                    TypeExpr::Generic("Optional".into(), vec![TypeExpr::name("int")]),
                    v,
                    None,
                )
            }
            "list_int" => list(
                "int",
                (0..n)
                    .map(|_| u.arbitrary().map(IValue::Int))
                    .collect::<Result<_, _>>()?,
            ),
            "list_float" => list(
                "float",
                (0..n)
                    .map(|_| Ok(IValue::Double(u.int_in_range(-64i32..=64)? as f64 / 4.0)))
                    .collect::<arbitrary::Result<_>>()?,
            ),
            "list_bool" => list(
                "bool",
                (0..n)
                    .map(|_| u.arbitrary().map(IValue::Bool))
                    .collect::<Result<_, _>>()?,
            ),
            "list_str" => {
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(IValue::String(Str::from(self.text(u)?)));
                }
                list("str", items)
            }
            "list_tensor" => {
                let mut items = Vec::new();
                for _ in 0..n.min(2) {
                    items.push(IValue::Tensor(Arc::new(self.any_tensor(u)?)));
                }
                list("Tensor", items)
            }
            "dict" => {
                let mut entries = Vec::new();
                for i in 0..n {
                    entries.push((
                        IValue::String(Str::from(format!("k{i}"))),
                        IValue::Int(u.arbitrary()?),
                    ));
                }
                (
                    TypeExpr::dict(TypeExpr::name("str"), TypeExpr::name("int")),
                    IValue::Dict(Arc::new(Dict {
                        key_type: TypeExpr::name("str"),
                        value_type: TypeExpr::name("int"),
                        entries,
                    })),
                    None,
                )
            }
            "tuple" => {
                let (t1, v1, _) = self.value(u, depth + 2)?;
                let (t2, v2, _) = self.value(u, depth + 2)?;
                (
                    TypeExpr::Generic("Tuple".into(), vec![t1, t2]),
                    IValue::Tuple(Arc::new(Tuple {
                        items: vec![v1, v2],
                        named: None,
                    })),
                    None,
                )
            }
            "device" => (
                TypeExpr::name("Device"),
                IValue::Device(Device::cpu()),
                None,
            ),
            "complex" => (
                TypeExpr::name("complex"),
                IValue::Complex(
                    u.int_in_range(-8i32..=8)? as f64,
                    u.int_in_range(-8i32..=8)? as f64,
                ),
                None,
            ),
            "enum" => {
                let name = self.class_key(u, "__torch__.E")?;
                let members = vec![
                    ("A".to_string(), "1".to_string()),
                    ("B".to_string(), "2".to_string()),
                ];
                let value = IValue::Int(u.int_in_range(1..=2)?);
                self.defs.push(Definition::Enum(EnumDef {
                    name: name.clone(),
                    members,
                }));
                (
                    TypeExpr::Name(name.as_str().to_string()),
                    IValue::Enum(Arc::new(EnumValue {
                        enum_type: name,
                        value,
                    })),
                    None,
                )
            }
            "torchbind" => {
                // What a quantized Linear holds: its packed parameters, pickled as the
                // C++ class's __getstate__ value (weight, bias). PyTorch's __setstate__
                // prepacks them, so the weight is a 2-d per-tensor qint8 tensor and the
                // bias, if any, float32 with one value per output feature.
                let (out_features, in_features) = (u.int_in_range(1..=3)?, u.int_in_range(1..=3)?);
                let mut weight_data = vec![0u8; (out_features * in_features) as usize];
                for b in weight_data.iter_mut() {
                    *b = u.arbitrary()?;
                }
                let mut weight = Tensor::contiguous(
                    ScalarType::QInt8,
                    Device::cpu(),
                    vec![out_features, in_features],
                    Bytes::from(weight_data),
                    false,
                );
                weight.quantization = Some(Quantization::PerTensor {
                    scheme: QScheme::PerTensorAffine,
                    scale: u.int_in_range(1u32..=64)? as f64 / 32.0,
                    zero_point: 0,
                });
                let bias = if u.arbitrary()? {
                    let mut data = Vec::new();
                    for _ in 0..out_features {
                        let v = u.int_in_range(-16i32..=16)? as f32 / 4.0;
                        data.extend_from_slice(&v.to_le_bytes());
                    }
                    self.seen("torchbind:bias");
                    IValue::Tensor(Arc::new(Tensor::contiguous(
                        ScalarType::Float32,
                        Device::cpu(),
                        vec![out_features],
                        Bytes::from(data),
                        false,
                    )))
                } else {
                    IValue::None
                };
                let class = QualifiedName::new(format!(
                    "{}quantized.LinearPackedParamsBase",
                    ptconform_core::model::torchbind::PREFIX
                ));
                let object = IValue::Object(Arc::new(ptconform_core::model::Object {
                    class: class.clone(),
                    state: ptconform_core::model::ObjectState::SetState(IValue::Tuple(Arc::new(
                        Tuple {
                            items: vec![IValue::Tensor(Arc::new(weight)), bias],
                            named: None,
                        },
                    ))),
                }));
                (TypeExpr::Name(class.as_str().to_string()), object, None)
            }
            "namedtuple" => {
                let name = self.class_key(u, "__torch__.T")?;
                let fields = vec![
                    ("a".to_string(), TypeExpr::name("int")),
                    ("b".to_string(), TypeExpr::name("str")),
                ];
                self.defs.push(Definition::NamedTuple(NamedTupleDef {
                    name: name.clone(),
                    fields,
                }));
                let items = vec![
                    IValue::Int(u.arbitrary()?),
                    IValue::String(Str::from(self.text(u)?)),
                ];
                (
                    TypeExpr::Name(name.as_str().to_string()),
                    IValue::Tuple(Arc::new(Tuple {
                        items,
                        named: Some(name),
                    })),
                    None,
                )
            }
            "object" | "interface" => {
                // A TorchScript class (`class C:` with `__init__` and a method), held
                // directly or through an interface it implements.
                let class = self.class_key(u, "__torch__.C")?;
                let a = u.int_in_range(-100i64..=100)?;
                self.define_source(
                    &class,
                    "class {NAME}:\n  a : int\n  def __init__(self: {KEY},\n    a: int) -> NoneType:\n    self.a = a\n    return None\n  def get(self: {KEY}) -> int:\n    return self.a\n",
                )?;
                let object = IValue::Object(Arc::new(ptconform_core::model::Object {
                    class: class.clone(),
                    state: ptconform_core::model::ObjectState::Attributes(vec![(
                        Str::from("a"),
                        IValue::Int(a),
                    )]),
                }));
                if kind == "object" {
                    (TypeExpr::Name(class.as_str().to_string()), object, None)
                } else {
                    let iface = self.class_key(u, "__torch__.I")?;
                    self.define_source(
                        &iface,
                        "class {NAME}(Interface):\n  def get(self) -> int:\n    pass\n",
                    )?;
                    (TypeExpr::Name(iface.as_str().to_string()), object, None)
                }
            }
            _ => unreachable!("every kind is handled"),
        })
    }

    /// Defines a type from TorchScript text (`{NAME}` = its short name, `{KEY}` = its
    /// qualified name); a colliding key (`NAME#k`) is given by renaming afterwards.
    fn define_source(&mut self, key: &QualifiedName, template: &str) -> arbitrary::Result<()> {
        let plain = original_name(key);
        let text = template
            .replace("{NAME}", plain.name())
            .replace("{KEY}", plain.as_str());
        let defs = ptconform_core::code::parse_source(plain.qualifier(), &text)
            .expect("the generator's own TorchScript templates parse");
        let mut renames = ptconform_core::model::compose::Renames::new();
        if &plain != key {
            renames.insert(plain.clone(), key.clone());
        }
        for d in defs {
            self.defs
                .push(ptconform_core::model::compose::rename_definition(
                    &d, &renames,
                ));
        }
        Ok(())
    }

    /// Short text: ASCII, quotes and escapes, or non-ASCII.
    fn text(&mut self, u: &mut Unstructured) -> arbitrary::Result<String> {
        const PIECES: &[&str] = &[
            "a", "hello", "'", "\"", "\\", "\n", "é", "漢", " ", "x_1", "\t",
        ];
        let n = u.int_in_range(0..=4)?;
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(u.choose(PIECES)?);
        }
        Ok(s)
    }

    fn extra_files(&mut self, u: &mut Unstructured) -> arbitrary::Result<ExtraFilesMap> {
        const NAMES: &[&str] = &[
            "meta.json",
            "dir/sub/config.yaml",
            "ünï/cödé.txt",
            "a",
            "weights.bin",
            "x/y",
            "README",
            "data.pkl",
            "deep/er/and/deeper.txt",
            "日本語.txt",
        ];
        let mut map = ExtraFilesMap::new();
        for _ in 0..u.int_in_range(0..=self.cfg.max_extra_files)? {
            let name = u.choose(NAMES)?.to_string();
            let size = u.int_in_range(0..=self.cfg.max_extra_file_size)? as usize;
            let content = match u.int_in_range(0..=2)? {
                0 => {
                    self.seen("extra:empty");
                    Vec::new()
                }
                1 => {
                    self.seen("extra:text");
                    "ptconform extra file\n".repeat(size / 21 + 1).into_bytes()[..size].to_vec()
                }
                _ => {
                    self.seen("extra:binary");
                    let mut v = u.bytes(size).map(<[u8]>::to_vec).unwrap_or_default();
                    v.push(0xff);
                    v
                }
            };
            if name.contains('/') {
                self.seen("extra:nested-name");
            }
            if !name.is_ascii() {
                self.seen("extra:unicode-name");
            }
            map.insert(name, Bytes::from(content));
        }
        if map.len() >= 3 {
            self.seen("extra:many");
        }
        Ok(map)
    }
}

/// Named types in the order a save asks the uniquer for their names: pickling meets
/// objects and enum values depth first in slot order (each heap value once); types
/// pickling does not meet (NamedTuples, functions) are asked later, while code is
/// printed, so they never change the numbers of these.
pub fn asking_order(module: &ScriptModule) -> Vec<QualifiedName> {
    let mut order: Vec<QualifiedName> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![IValue::Object(module.root.clone())];
    while let Some(v) = stack.pop() {
        if let Some(id) = v.identity()
            && !seen.insert(id)
        {
            continue;
        }
        let name = match &v {
            IValue::Object(o) => Some(&o.class),
            IValue::Enum(e) => Some(&e.enum_type),
            _ => None,
        };
        if let Some(n) = name
            && !order.contains(n)
        {
            order.push(n.clone());
        }
        let children: Vec<IValue> = v.children().into_iter().cloned().collect();
        stack.extend(children.into_iter().rev());
    }
    order
}

/// The name a class key is written under when it does not collide.
pub fn plain_name(key: &QualifiedName) -> QualifiedName {
    original_name(key)
}

//! `inspect`: the module as PyTorch sees it, as JSON facts or a human-readable report.
//!
//! The facts are typed records that serialize straight to the JSON `inspect --json`
//! prints (field order is the documented key order), so a whole-process `inspect` builds
//! no `serde_json::Value` tree; [`Facts::to_value`] gives one to callers that compare.

use std::fmt::Write;

use crate::display::escaped;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::flatbuffer::MobileModule;
use crate::model::bytecode::ModuleInfo;
use crate::model::{Device, ScalarType, ScriptModule, Tensor};
use crate::zip_archive::ZipArchiveReader;

/// What `inspect --json` prints for an archive of either format.
#[derive(Clone, Debug, Serialize)]
pub struct Facts {
    /// `zip` or `flatbuffer`.
    pub format: &'static str,
    /// `named_modules()`, root first.
    pub modules: Vec<ModuleFact>,
    /// `named_parameters()`.
    pub parameters: Vec<TensorFact>,
    /// `named_buffers()`.
    pub buffers: Vec<TensorFact>,
    /// The extra files `torch.jit.load` returns, sorted by name.
    pub extra_files: Vec<ExtraFact>,
    /// The `code/` sources (`.py` names below `code/`), sorted; empty for a flatbuffer.
    pub code_files: Vec<String>,
    /// The archive's format version (`.data/version` or `version`); `null` for a flatbuffer.
    pub version: Option<u64>,
    /// The zip's record prefix; `null` for a flatbuffer.
    pub prefix: Option<String>,
    /// `get_flatbuffer_module_info`, for a flatbuffer only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_info: Option<ModuleInfo>,
    /// What the facts may lack (a `__setstate__` ptconform does not evaluate); the key is
    /// absent when there is nothing to say, as in PyTorch's own facts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One entry of `named_modules()`.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleFact {
    /// The dotted path (`""` for the root).
    pub name: String,
    /// The module's qualified class name.
    #[serde(rename = "type")]
    pub class: String,
}

/// One named tensor.
#[derive(Clone, Debug, Serialize)]
pub struct TensorFact {
    /// The dotted path.
    pub name: String,
    /// The dtype's name (`float32`).
    #[serde(serialize_with = "dtype_name")]
    pub dtype: ScalarType,
    /// The sizes.
    pub shape: crate::model::Dims,
    /// The device the load put it on (`cpu`, `cuda:0`).
    #[serde(serialize_with = "device_name")]
    pub device: Device,
}

/// One extra file.
#[derive(Clone, Debug, Serialize)]
pub struct ExtraFact {
    /// The name below `extra/`.
    pub name: String,
    /// Its length in bytes.
    pub size: usize,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

fn dtype_name<S: serde::Serializer>(d: &ScalarType, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(d.name())
}

fn device_name<S: serde::Serializer>(d: &Device, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(d)
}

impl TensorFact {
    fn new(name: String, t: &Tensor) -> Self {
        TensorFact {
            name,
            dtype: t.dtype(),
            shape: t.sizes.clone(),
            device: *t.device(),
        }
    }
}

impl ExtraFact {
    fn new(name: &str, data: &[u8]) -> Self {
        ExtraFact {
            name: name.to_string(),
            size: data.len(),
            sha256: sha256_hex(data),
        }
    }
}

impl Facts {
    /// The facts as a JSON value (what `inspect --json` prints, parsed).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("facts are plain data")
    }

    fn of_module(format: &'static str, module: &ScriptModule) -> Self {
        let modules = module.named_modules();
        let modules_facts = modules
            .iter()
            .map(|m| ModuleFact {
                name: m.name.clone(),
                class: m.object.class.as_str().to_string(),
            })
            .collect();
        let tensors = |named: Vec<crate::model::module::NamedTensor>| -> Vec<TensorFact> {
            named
                .into_iter()
                .map(|p| TensorFact::new(p.name, &p.tensor))
                .collect()
        };
        Facts {
            format,
            modules: modules_facts,
            parameters: tensors(module.named_parameters_in(&modules)),
            buffers: tensors(module.named_buffers_in(&modules)),
            extra_files: Vec::new(),
            code_files: Vec::new(),
            version: None,
            prefix: None,
            module_info: None,
            notes: module.notes_in(&modules),
        }
    }
}

/// The SHA-256 of `data`, as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    let mut s = String::with_capacity(64);
    for b in h.finalize() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The facts `inspect --json` prints for a zip archive.
pub fn facts(archive: &ZipArchiveReader, module: &ScriptModule) -> Result<Facts> {
    let mut facts = Facts::of_module("zip", module);
    let mut names = archive.extra_file_names();
    names.sort();
    for name in names {
        let data = archive.read(&format!("extra/{name}"), false)?;
        facts.extra_files.push(ExtraFact::new(&name, &data));
    }
    let mut code_files: Vec<String> = archive
        .record_names()
        .filter_map(|n| n.strip_prefix("code/"))
        .filter(|n| n.ends_with(".py"))
        .map(str::to_string)
        .collect();
    code_files.sort();
    facts.code_files = code_files;
    facts.version = Some(archive.version()?.0);
    facts.prefix = Some(archive.prefix().to_string());
    Ok(facts)
}

/// The facts `inspect --json` prints for a mobile flatbuffer: the zip's keys (`code_files`
/// empty, `version` and `prefix` null, as PyTorch exposes none of them for a flatbuffer)
/// plus `module_info` (`get_flatbuffer_module_info`, sets as sorted lists).
/// `extra_files` holds every extra file, sorted by name, as `torch.jit.load` returns them
/// (a name stored twice keeps its last content).
///
/// `buffer` is the file `mobile` was read from: the module info is read from it
/// ([`crate::jit::get_flatbuffer_module_info`]).
pub fn flatbuffer_facts(buffer: &[u8], mobile: &MobileModule) -> Result<Facts> {
    let module_info = crate::jit::get_flatbuffer_module_info(buffer)?;
    let mut facts = Facts::of_module("flatbuffer", &mobile.module);
    let mut files: std::collections::BTreeMap<&str, &[u8]> = std::collections::BTreeMap::new();
    for (name, data) in &mobile.extra_files {
        files.insert(name, data);
    }
    facts.extra_files = files
        .into_iter()
        .map(|(name, data)| ExtraFact::new(name, data))
        .collect();
    facts.module_info = Some(module_info);
    Ok(facts)
}

/// The `inspect --json` facts of an archive in either format (detected from the bytes).
pub fn facts_of_bytes(
    data: bytes::Bytes,
    map_location: Option<crate::model::Device>,
) -> Result<Facts> {
    if crate::jit::file_format(&data) == crate::jit::FileFormat::Flatbuffer {
        let mobile = crate::flatbuffer::read_flatbuffer(&data, map_location)?;
        return flatbuffer_facts(&data, &mobile);
    }
    let mut options = crate::zip_archive::LoadOptions {
        map_location,
        ..Default::default()
    };
    let (archive, module) = crate::zip_archive::load::open_and_load(data, &mut options)?;
    facts(&archive, &module)
}

/// A human-readable report of the same facts.
pub fn report(facts: &Facts) -> String {
    let mut s = String::new();
    let _ = write_report(facts, &mut s);
    s
}

/// [`report`], written to `s`.
pub fn write_report(facts: &Facts, s: &mut impl Write) -> std::fmt::Result {
    match (facts.version, &facts.prefix) {
        (Some(version), Some(prefix)) => writeln!(
            s,
            "format: {}  version: {version}  prefix: {}",
            facts.format,
            escaped(prefix)
        )?,
        _ => writeln!(s, "format: {}", facts.format)?,
    }
    writeln!(s, "\nmodules:")?;
    for m in &facts.modules {
        let (depth, shown) = if m.name.is_empty() {
            (0, "<root>")
        } else {
            let depth = m.name.matches('.').count() + 1;
            (depth, m.name.rsplit('.').next().unwrap_or(&m.name))
        };
        writeln!(
            s,
            "  {:indent$}{}: {}",
            "",
            escaped(shown),
            escaped(&m.class),
            indent = 2 * depth
        )?;
    }
    for (key, items) in [
        ("parameters", &facts.parameters),
        ("buffers", &facts.buffers),
    ] {
        writeln!(s, "\n{key} ({}):", items.len())?;
        let mut shape = String::new();
        for p in items {
            shape.clear();
            for (i, d) in p.shape.iter().enumerate() {
                if i > 0 {
                    shape.push_str(", ");
                }
                write!(shape, "{d}")?;
            }
            writeln!(
                s,
                "  {:<40} {:<10} [{shape}] {}",
                escaped(&p.name),
                p.dtype.name(),
                p.device
            )?;
        }
    }
    writeln!(s, "\nextra files ({}):", facts.extra_files.len())?;
    for e in &facts.extra_files {
        writeln!(
            s,
            "  {:<40} {} bytes  sha256 {}",
            escaped(&e.name),
            e.size,
            e.sha256
        )?;
    }
    if let Some(info) = &facts.module_info {
        write_module_info(s, info)?;
    } else {
        writeln!(s, "\ncode files ({}):", facts.code_files.len())?;
        for c in &facts.code_files {
            writeln!(s, "  {}", escaped(c))?;
        }
    }
    for n in &facts.notes {
        writeln!(s, "\nnote: {}", escaped(n))?;
    }
    Ok(())
}

/// The module info (`get_flatbuffer_module_info`) as report lines.
fn write_module_info(s: &mut impl Write, info: &ModuleInfo) -> std::fmt::Result {
    writeln!(
        s,
        "\nmodule info: bytecode_version {}  operator_version {}",
        info.bytecode_version, info.operator_version
    )?;
    for (key, items) in [
        ("function_names", &info.function_names),
        ("type_names", &info.type_names),
    ] {
        writeln!(s, "  {key} ({}):", items.len())?;
        for n in items {
            writeln!(s, "    {}", escaped(n))?;
        }
    }
    writeln!(
        s,
        "  opname_to_num_args ({}):",
        info.opname_to_num_args.len()
    )?;
    for (name, n) in &info.opname_to_num_args {
        writeln!(s, "    {:<40} {n}", escaped(name))?;
    }
    Ok(())
}

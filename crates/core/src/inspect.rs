//! `inspect`: the module as PyTorch sees it, as JSON facts or a human-readable report.

use crate::display::escaped;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::flatbuffer::MobileModule;
use crate::model::{ScriptModule, Tensor};
use crate::zip_archive::ZipArchiveReader;

fn tensor_fact(name: &str, t: &Tensor) -> Value {
    json!({
        "name": name,
        "dtype": t.dtype().name(),
        "shape": t.sizes,
        "device": t.device().to_string(),
    })
}

/// The SHA-256 of `data`, as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `modules`, `parameters` and `buffers`, as PyTorch's `named_modules()`,
/// `named_parameters()` and `named_buffers()` report them (any format).
fn module_facts(module: &ScriptModule) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let modules: Vec<Value> = module
        .named_modules()
        .iter()
        .map(|m| json!({"name": m.name, "type": m.object.class.as_str()}))
        .collect();
    let parameters: Vec<Value> = module
        .named_parameters()
        .iter()
        .map(|p| tensor_fact(&p.name, &p.tensor))
        .collect();
    let buffers: Vec<Value> = module
        .named_buffers()
        .iter()
        .map(|p| tensor_fact(&p.name, &p.tensor))
        .collect();
    (modules, parameters, buffers)
}

fn extra_fact(name: &str, data: &[u8]) -> Value {
    json!({"name": name, "size": data.len(), "sha256": sha256_hex(data)})
}

/// The facts `inspect --json` prints for a zip archive (keys in the documented order).
pub fn facts(archive: &ZipArchiveReader, module: &ScriptModule) -> Result<Value> {
    let (modules, parameters, buffers) = module_facts(module);
    let mut extra = Vec::new();
    let mut names = archive.extra_file_names();
    names.sort();
    for name in names {
        let data = archive.read(&format!("extra/{name}"), false)?;
        extra.push(extra_fact(&name, &data));
    }
    let mut code_files: Vec<&str> = archive
        .record_names()
        .filter_map(|n| n.strip_prefix("code/"))
        .filter(|n| n.ends_with(".py"))
        .collect();
    code_files.sort();
    let (version, _) = archive.version()?;
    let mut facts = json!({
        "format": "zip",
        "modules": modules,
        "parameters": parameters,
        "buffers": buffers,
        "extra_files": extra,
        "code_files": code_files,
        "version": version,
        "prefix": archive.prefix(),
    });
    add_notes(&mut facts, module);
    Ok(facts)
}

/// `notes`, only when there are any: what the facts may lack (a `__setstate__` that
/// ptconform does not evaluate). PyTorch's own facts never have the key.
fn add_notes(facts: &mut Value, module: &ScriptModule) {
    let notes = module.notes();
    if !notes.is_empty()
        && let Some(o) = facts.as_object_mut()
    {
        o.insert("notes".into(), json!(notes));
    }
}

/// The facts `inspect --json` prints for a mobile flatbuffer: the zip's keys (`code_files`
/// empty, `version` and `prefix` null, as PyTorch exposes none of them for a flatbuffer)
/// plus `module_info` (`get_flatbuffer_module_info`, sets as sorted lists).
/// `extra_files` holds every extra file, sorted by name, as `torch.jit.load` returns them
/// (a name stored twice keeps its last content).
///
/// `buffer` is the file `mobile` was read from: the module info is read from it
/// ([`crate::jit::get_flatbuffer_module_info`]).
pub fn flatbuffer_facts(buffer: &[u8], mobile: &MobileModule) -> Result<Value> {
    let module_info = crate::jit::get_flatbuffer_module_info(buffer)?;
    let (modules, parameters, buffers) = module_facts(&mobile.module);
    let mut files: std::collections::BTreeMap<&str, &[u8]> = std::collections::BTreeMap::new();
    for (name, data) in &mobile.extra_files {
        files.insert(name, data);
    }
    let extra: Vec<Value> = files
        .into_iter()
        .map(|(name, data)| extra_fact(name, data))
        .collect();
    let mut facts = json!({
        "format": "flatbuffer",
        "modules": modules,
        "parameters": parameters,
        "buffers": buffers,
        "extra_files": extra,
        "code_files": [],
        "version": null,
        "prefix": null,
        "module_info": module_info,
    });
    add_notes(&mut facts, &mobile.module);
    Ok(facts)
}

/// The `inspect --json` facts of an archive in either format (detected from the bytes).
pub fn facts_of_bytes(
    data: bytes::Bytes,
    map_location: Option<crate::model::Device>,
) -> Result<Value> {
    if crate::jit::file_format(&data) == crate::jit::FileFormat::Flatbuffer {
        let mobile = crate::flatbuffer::read_flatbuffer(&data, map_location)?;
        return flatbuffer_facts(&data, &mobile);
    }
    let archive = ZipArchiveReader::from_bytes(data)?;
    let mut options = crate::zip_archive::LoadOptions {
        map_location,
        ..Default::default()
    };
    let module = crate::zip_archive::load_archive(&archive, &mut options)?;
    facts(&archive, &module)
}

/// A human-readable report of the same facts.
pub fn report(facts: &Value) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let get = |k: &str| facts[k].as_array().cloned().unwrap_or_default();
    if facts["format"] == "flatbuffer" {
        let _ = writeln!(s, "format: flatbuffer");
    } else {
        let _ = writeln!(
            s,
            "format: {}  version: {}  prefix: {}",
            facts["format"].as_str().unwrap_or("?"),
            facts["version"],
            escaped(facts["prefix"].as_str().unwrap_or("?"))
        );
    }
    let _ = writeln!(s, "\nmodules:");
    for m in get("modules") {
        let name = m["name"].as_str().unwrap_or("");
        let depth = if name.is_empty() {
            0
        } else {
            name.matches('.').count() + 1
        };
        let shown = if name.is_empty() {
            "<root>"
        } else {
            name.rsplit('.').next().unwrap_or(name)
        };
        let _ = writeln!(
            s,
            "  {}{}: {}",
            "  ".repeat(depth),
            escaped(shown),
            escaped(m["type"].as_str().unwrap_or(""))
        );
    }
    for key in ["parameters", "buffers"] {
        let items = get(key);
        let _ = writeln!(s, "\n{key} ({}):", items.len());
        for p in items {
            let shape: Vec<String> = p["shape"]
                .as_array()
                .map(|a| a.iter().map(|v| v.to_string()).collect())
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {:<40} {:<10} [{}] {}",
                escaped(p["name"].as_str().unwrap_or("")),
                p["dtype"].as_str().unwrap_or(""),
                shape.join(", "),
                p["device"].as_str().unwrap_or("")
            );
        }
    }
    let extra = get("extra_files");
    let _ = writeln!(s, "\nextra files ({}):", extra.len());
    for e in extra {
        let _ = writeln!(
            s,
            "  {:<40} {:>10} bytes  sha256 {}",
            escaped(e["name"].as_str().unwrap_or("")),
            e["size"],
            e["sha256"].as_str().unwrap_or("")
        );
    }
    if facts["format"] == "flatbuffer" {
        report_module_info(&mut s, &facts["module_info"]);
    } else {
        let code = get("code_files");
        let _ = writeln!(s, "\ncode files ({}):", code.len());
        for c in code {
            let _ = writeln!(s, "  {}", escaped(c.as_str().unwrap_or("")));
        }
    }
    for n in get("notes") {
        let _ = writeln!(s, "\nnote: {}", escaped(n.as_str().unwrap_or("")));
    }
    s
}

/// The module info (`get_flatbuffer_module_info`) as report lines.
fn report_module_info(s: &mut String, info: &Value) {
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "\nmodule info: bytecode_version {}  operator_version {}",
        info["bytecode_version"], info["operator_version"]
    );
    for key in ["function_names", "type_names"] {
        let items = info[key].as_array().cloned().unwrap_or_default();
        let _ = writeln!(s, "  {key} ({}):", items.len());
        for n in items {
            let _ = writeln!(s, "    {}", escaped(n.as_str().unwrap_or("")));
        }
    }
    let ops = info["opname_to_num_args"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let _ = writeln!(s, "  opname_to_num_args ({}):", ops.len());
    for (name, n) in ops {
        let _ = writeln!(s, "    {:<40} {n}", escaped(&name));
    }
}

//! A mobile zip's `bytecode.pkl` (and `mobile_debug_handles.pkl`) read into the same
//! bytecode model as a flatbuffer's functions ([`BytecodeFunction`]).
//!
//! `_save_for_lite_interpreter` pickles one tuple: the bytecode version, then one
//! `(qualified_name, code, schema)` tuple per function, where `code` is a tuple of
//! `(key, value)` pairs (`instructions`: `(OPNAME, X, N)` triples, `operators`:
//! `(name, overload[, num_args])`, `constants`, `types`: type strings, `register_size`)
//! and `schema` is `(("arguments", ARGS), ("returns", ARGS))`, each argument
//! `(("name", s), ("type", s), ("default_value", v))`. Tensor constants name the
//! `constants/N.storage` records. The lite interpreter reads this; `torch.jit.load` does
//! not, so a damaged `bytecode.pkl` makes only the lite interpreter fail.

use std::sync::Arc;

use crate::error::{FormatError, rules};
use crate::model::bytecode::{
    Arg, BytecodeFunction, FunctionSchema, Instruction, ModuleInfo, OpCode, Operator,
};
use crate::model::{IValue, QualifiedName};

use super::load::{LoadOptions, read_pickle};
use super::read::ZipArchiveReader;

/// The bytecode of a mobile zip.
#[derive(Clone, Debug)]
pub struct MobileZipBytecode {
    /// The first element of `bytecode.pkl` (what `_get_model_bytecode_version` returns).
    pub bytecode_version: i64,
    /// Every function, in file order.
    pub functions: Vec<Arc<BytecodeFunction>>,
}

impl MobileZipBytecode {
    /// The module info PyTorch reports for the same functions in a flatbuffer; the
    /// operator version of a zip is its `version` record.
    pub fn module_info(&self, operator_version: u64) -> ModuleInfo {
        ModuleInfo::new(
            self.bytecode_version.clamp(0, u32::MAX as i64) as u32,
            operator_version.min(u32::MAX as u64) as u32,
            self.functions.iter().map(|f| f.as_ref()),
        )
    }
}

fn bad(path: &str, message: impl Into<String>) -> FormatError {
    FormatError::new(
        rules::MOBILE_BYTECODE,
        "bytecode.pkl",
        None,
        format!("{path}: {}", message.into()),
    )
}

fn tuple<'a>(v: &'a IValue, path: &str) -> Result<&'a [IValue], FormatError> {
    match v {
        IValue::Tuple(t) => Ok(&t.items),
        other => Err(bad(
            path,
            format!("expected a tuple, found {}", other.kind_name()),
        )),
    }
}

fn string(v: &IValue, path: &str) -> Result<String, FormatError> {
    match v {
        IValue::String(s) => s
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| bad(path, "string is not UTF-8")),
        other => Err(bad(
            path,
            format!("expected a string, found {}", other.kind_name()),
        )),
    }
}

fn int(v: &IValue, path: &str) -> Result<i64, FormatError> {
    match v {
        IValue::Int(i) => Ok(*i),
        other => Err(bad(
            path,
            format!("expected an int, found {}", other.kind_name()),
        )),
    }
}

/// `(("key", value), ...)` as pairs.
fn pairs<'a>(v: &'a IValue, path: &str) -> Result<Vec<(String, &'a IValue)>, FormatError> {
    tuple(v, path)?
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let here = format!("{path}[{i}]");
            match tuple(p, &here)? {
                [k, v] => Ok((string(k, &here)?, v)),
                other => Err(bad(
                    &here,
                    format!("expected a (key, value) pair, found {} items", other.len()),
                )),
            }
        })
        .collect()
}

fn args(v: &IValue, path: &str) -> Result<Vec<Arg>, FormatError> {
    tuple(v, path)?
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let here = format!("{path}[{i}]");
            let mut arg = Arg {
                name: String::new(),
                type_str: String::new(),
                default_value: None,
            };
            for (k, v) in pairs(a, &here)? {
                match k.as_str() {
                    "name" => arg.name = string(v, &format!("{here}.name"))?,
                    "type" => arg.type_str = string(v, &format!("{here}.type"))?,
                    "default_value" => {
                        arg.default_value = (!matches!(v, IValue::None)).then(|| v.clone())
                    }
                    other => return Err(bad(&here, format!("unknown argument field {other:?}"))),
                }
            }
            Ok(arg)
        })
        .collect()
}

fn function(v: &IValue, index: usize) -> Result<BytecodeFunction, FormatError> {
    let path = format!("functions[{index}]");
    let items = tuple(v, &path)?;
    let (name, code, schema) = match items {
        [n, c] => (n, c, None),
        [n, c, s] => (n, c, Some(s)),
        other => {
            return Err(bad(
                &path,
                format!(
                    "expected (name, code[, schema]), found {} items",
                    other.len()
                ),
            ));
        }
    };
    let name = string(name, &format!("{path}.name"))?;
    let path = format!("{path} ({name})");
    let mut f = BytecodeFunction {
        qualified_name: QualifiedName::new(name),
        instructions: Vec::new(),
        operators: Vec::new(),
        constants: Vec::new(),
        type_annotations: Vec::new(),
        register_size: 0,
        schema: None,
        debug_handles: Vec::new(),
        class_type: 0,
    };
    for (key, value) in pairs(code, &format!("{path}.code"))? {
        let here = format!("{path}.{key}");
        match key.as_str() {
            "instructions" => {
                for (i, ins) in tuple(value, &here)?.iter().enumerate() {
                    let at = format!("{here}[{i}]");
                    let [op, x, n] = tuple(ins, &at)? else {
                        return Err(bad(&at, "expected (OPNAME, X, N)"));
                    };
                    let op_name = string(op, &at)?;
                    let op = OpCode::from_name(&op_name)
                        .ok_or_else(|| bad(&at, format!("unknown opcode {op_name:?}")))?;
                    let x = i32::try_from(int(x, &at)?)
                        .map_err(|_| bad(&at, "X does not fit in 32 bits"))?;
                    let n = u16::try_from(int(n, &at)?)
                        .map_err(|_| bad(&at, "N does not fit in 16 bits"))?;
                    f.instructions.push(Instruction { op, n, x });
                }
            }
            "operators" => {
                for (i, o) in tuple(value, &here)?.iter().enumerate() {
                    let at = format!("{here}[{i}]");
                    let (name, overload, num_args) = match tuple(o, &at)? {
                        [n, ov] => (n, ov, None),
                        [n, ov, k] => (n, ov, Some(int(k, &at)?)),
                        _ => return Err(bad(&at, "expected (name, overload[, num_args])")),
                    };
                    f.operators.push(Operator {
                        name: string(name, &at)?,
                        overload_name: string(overload, &at)?,
                        num_args: num_args
                            .map(|k| {
                                i32::try_from(k).map_err(|_| bad(&at, "num_args out of range"))
                            })
                            .transpose()?,
                    });
                }
            }
            "constants" => f.constants = tuple(value, &here)?.to_vec(),
            "types" => {
                for (i, t) in tuple(value, &here)?.iter().enumerate() {
                    f.type_annotations.push(string(t, &format!("{here}[{i}]"))?);
                }
            }
            "register_size" => {
                f.register_size =
                    i32::try_from(int(value, &here)?).map_err(|_| bad(&here, "out of range"))?;
            }
            other => return Err(bad(&path, format!("unknown code field {other:?}"))),
        }
    }
    if let Some(schema) = schema {
        let mut s = FunctionSchema::default();
        for (key, value) in pairs(schema, &format!("{path}.schema"))? {
            match key.as_str() {
                "arguments" => s.arguments = args(value, &format!("{path}.schema.arguments"))?,
                "returns" => s.returns = args(value, &format!("{path}.schema.returns"))?,
                other => return Err(bad(&path, format!("unknown schema field {other:?}"))),
            }
        }
        f.schema = Some(s);
    }
    check_operands(&f, &path)?;
    Ok(f)
}

/// The operand ranges the lite interpreter indexes without checking.
fn check_operands(f: &BytecodeFunction, path: &str) -> Result<(), FormatError> {
    for (i, ins) in f.instructions.iter().enumerate() {
        let (table, len) = match ins.op {
            OpCode::Op | OpCode::OpN => ("operators", f.operators.len()),
            OpCode::LoadC => ("constants", f.constants.len()),
            _ => continue,
        };
        if ins.x < 0 || ins.x as usize >= len {
            return Err(bad(
                &format!("{path}.instructions[{i}]"),
                format!(
                    "{} X {} is out of range ({len} {table})",
                    ins.op.name(),
                    ins.x
                ),
            ));
        }
    }
    Ok(())
}

/// Reads `bytecode.pkl` (and the debug handles of `mobile_debug_handles.pkl`, when
/// present); `None` for an archive without `bytecode.pkl` (every `torch.jit.save` file).
pub fn read_mobile_bytecode(
    archive: &ZipArchiveReader,
    verify_crc: bool,
) -> Result<Option<MobileZipBytecode>, FormatError> {
    if !archive.has_record("bytecode.pkl") {
        return Ok(None);
    }
    let options = LoadOptions {
        verify_crc,
        ..Default::default()
    };
    let value = read_pickle(archive, "bytecode.pkl", "constants", &options)?.value;
    let items = tuple(&value, "bytecode.pkl")?;
    let Some((version, functions)) = items.split_first() else {
        return Err(bad("bytecode.pkl", "empty tuple: no bytecode version"));
    };
    let bytecode_version = int(version, "version")?;
    let mut out: Vec<BytecodeFunction> = functions
        .iter()
        .enumerate()
        .map(|(i, f)| function(f, i))
        .collect::<Result<_, _>>()?;
    if archive.has_record("mobile_debug_handles.pkl") {
        let handles =
            read_pickle(archive, "mobile_debug_handles.pkl", "constants", &options)?.value;
        attach_debug_handles(&handles, &mut out)?;
    }
    Ok(Some(MobileZipBytecode {
        bytecode_version,
        functions: out.into_iter().map(Arc::new).collect(),
    }))
}

/// `(version, (name, (("function_debug_handles", [h, ...]),)), ...)`: one handle per
/// instruction of the function of that name.
fn attach_debug_handles(v: &IValue, functions: &mut [BytecodeFunction]) -> Result<(), FormatError> {
    let bad =
        |m: String| FormatError::new(rules::MOBILE_BYTECODE, "mobile_debug_handles.pkl", None, m);
    let IValue::Tuple(t) = v else {
        return Err(bad("expected a tuple".into()));
    };
    for entry in t.items.iter().skip(1) {
        let IValue::Tuple(e) = entry else {
            return Err(bad("expected (name, fields) tuples".into()));
        };
        let [IValue::String(name), IValue::Tuple(fields)] = e.items.as_slice() else {
            return Err(bad("expected (name, fields) tuples".into()));
        };
        let Some(f) = functions
            .iter_mut()
            .find(|f| f.qualified_name.as_str().as_bytes() == name.as_bytes())
        else {
            continue;
        };
        for field in &fields.items {
            if let IValue::Tuple(p) = field
                && let [IValue::String(k), IValue::List(l)] = p.items.as_slice()
                && k.as_bytes() == b"function_debug_handles"
            {
                f.debug_handles = l
                    .items
                    .iter()
                    .map(|h| match h {
                        IValue::Int(i) => Ok(*i),
                        _ => Err(bad("debug handles must be ints".into())),
                    })
                    .collect::<Result<_, _>>()?;
            }
        }
    }
    Ok(())
}

// The write side: the value `_save_for_lite_interpreter` pickles as `bytecode.pkl`, the
// mirror of `function` above.

fn tuple_of(items: Vec<IValue>) -> IValue {
    IValue::Tuple(Arc::new(crate::model::Tuple { items, named: None }))
}

fn text(s: &str) -> IValue {
    IValue::String(s.into())
}

fn pair(key: &str, value: IValue) -> IValue {
    tuple_of(vec![text(key), value])
}

fn args_value(args: &[Arg]) -> IValue {
    tuple_of(
        args.iter()
            .map(|a| {
                tuple_of(vec![
                    pair("name", text(&a.name)),
                    pair("type", text(&a.type_str)),
                    pair(
                        "default_value",
                        a.default_value.clone().unwrap_or(IValue::None),
                    ),
                ])
            })
            .collect(),
    )
}

fn function_value(f: &BytecodeFunction) -> IValue {
    let instructions = f
        .instructions
        .iter()
        .map(|i| {
            tuple_of(vec![
                text(i.op.name()),
                IValue::Int(i.x.into()),
                IValue::Int(i.n.into()),
            ])
        })
        .collect();
    let operators = f
        .operators
        .iter()
        .map(|o| {
            let mut items = vec![text(&o.name), text(&o.overload_name)];
            if let Some(k) = o.num_args {
                items.push(IValue::Int(k.into()));
            }
            tuple_of(items)
        })
        .collect();
    let code = tuple_of(vec![
        pair("instructions", tuple_of(instructions)),
        pair("operators", tuple_of(operators)),
        pair("constants", tuple_of(f.constants.clone())),
        pair(
            "types",
            tuple_of(f.type_annotations.iter().map(|t| text(t)).collect()),
        ),
        pair("register_size", IValue::Int(f.register_size.into())),
    ]);
    let mut items = vec![text(f.qualified_name.as_str()), code];
    if let Some(s) = &f.schema {
        items.push(tuple_of(vec![
            pair("arguments", args_value(&s.arguments)),
            pair("returns", args_value(&s.returns)),
        ]));
    }
    tuple_of(items)
}

/// The `bytecode.pkl` value for `functions`: `(version, function, ...)`.
pub fn bytecode_value(bytecode_version: i64, functions: &[Arc<BytecodeFunction>]) -> IValue {
    let mut items = vec![IValue::Int(bytecode_version)];
    items.extend(functions.iter().map(|f| function_value(f)));
    tuple_of(items)
}

/// The bytecode version `_save_for_lite_interpreter` of PyTorch 2.15 writes into a zip
/// (a flatbuffer of the same module says 9: version 9 only marks the flatbuffer format).
pub const ZIP_BYTECODE_VERSION: i64 = 8;

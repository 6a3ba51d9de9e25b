//! The mobile flatbuffer dump: every `Module` field, ivalues by index, object types,
//! functions, storages, extra files and `jit_sources`.

use super::*;

struct Fb<'a> {
    buf: &'a [u8],
    n_ivalues: usize,
    n_types: usize,
    n_storages: usize,
    type_names: Vec<String>,
    attr_names: Vec<Vec<String>>,
    problems: Vec<FormatError>,
}

impl Fb<'_> {
    /// `#N`, marking (and reporting) an index outside `Module.ivalues`.
    fn iv(&mut self, field: &str, i: u32) -> String {
        if (i as usize) < self.n_ivalues {
            format!("#{i}")
        } else {
            self.bad(field, format!("ivalue index {i} is out of range"));
            format!("#{i} !!out of range")
        }
    }

    fn ivs(&mut self, field: &str, v: Option<flatbuffers::Vector<'_, u32>>) -> String {
        let items: Vec<String> = v
            .map(|v| {
                v.iter()
                    .enumerate()
                    .map(|(k, i)| self.iv(&format!("{field}[{k}]"), i))
                    .collect()
            })
            .unwrap_or_default();
        format!("[{}]", items.join(", "))
    }

    fn type_ref(&mut self, field: &str, i: u32) -> String {
        match self.type_names.get(i as usize) {
            Some(n) => format!("type #{i} ({n})"),
            None => {
                let n = self.n_types;
                self.bad(
                    field,
                    format!("object type index {i} is out of range ({n} types)"),
                );
                format!("type #{i} !!out of range")
            }
        }
    }

    fn bad(&mut self, field: &str, msg: String) {
        self.problems
            .push(ptconform_core::flatbuffer::read::field_error(field, msg));
    }

    fn offset_of(&self, s: &[u8]) -> usize {
        (s.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize)
    }

    fn tensor(&mut self, field: &str, t: &fb::TensorMetadata<'_>) -> String {
        let st = t.storage_location_index();
        let storage = if (st as usize) < self.n_storages {
            format!("storage #{st}")
        } else {
            let n = self.n_storages;
            self.bad(
                &format!("{field}.storage_location_index"),
                format!("storage index {st} is out of range ({n} storages)"),
            );
            format!("storage #{st} !!out of range")
        };
        let dtype = ScalarType::from_number(i64::from(t.scalar_type()))
            .map(|d| d.name().to_string())
            .unwrap_or_else(|| format!("scalar_type {}", t.scalar_type()));
        let list = |v: Option<flatbuffers::Vector<'_, i32>>| {
            let items: Vec<String> = v
                .map(|v| v.iter().map(|x| x.to_string()).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        };
        let mut s = format!(
            "Tensor {storage} {dtype} offset {} sizes {} strides {}",
            t.storage_offset(),
            list(t.sizes()),
            list(t.strides())
        );
        if t.requires_grad() {
            s.push_str(" requires_grad");
        }
        if let Some(q) = t.quantized_schema() {
            let scheme = ptconform_core::model::QScheme::ALL
                .iter()
                .find(|s| **s as i8 == q.qscheme())
                .map(|s| s.name().to_string())
                .unwrap_or_else(|| format!("qscheme {}", q.qscheme()));
            let _ = write!(
                s,
                " quantized {scheme} scale {:?} zero_point {} axis {}",
                q.scale(),
                q.zero_point(),
                q.axis()
            );
            if let Some(sc) = q.scales() {
                let inner = self.tensor(&format!("{field}.quantized_schema.scales"), &sc);
                let _ = write!(s, " scales {{{inner}}}");
            }
            if let Some(zp) = q.zero_points() {
                let inner = self.tensor(&format!("{field}.quantized_schema.zero_points"), &zp);
                let _ = write!(s, " zero_points {{{inner}}}");
            }
        }
        s
    }

    fn ivalue(&mut self, k: usize, iv: &fb::IValue<'_>) -> String {
        use fb::IValueUnion as U;
        let field = format!("Module.ivalues[{k}]");
        if let Err(e) = support::check_ivalue_union(self.buf, iv) {
            self.bad(&field, e.clone());
            return format!("!! {e}");
        }
        let tag = iv.val_type();
        let missing = |what: &str| format!("{what} !!table missing");
        match tag {
            U::NONE => "None".into(),
            U::Int => match support::read_int(iv) {
                Some(v) => format!("Int {v}"),
                None => missing("Int"),
            },
            U::Bool => match support::read_bool(iv) {
                Some(v) => format!("Bool {v}"),
                None => missing("Bool"),
            },
            U::Double => match support::read_double(iv) {
                Some(v) => format!("Double {v:?}"),
                None => missing("Double"),
            },
            U::ComplexDouble => match support::read_complex(iv) {
                Some((re, im)) => format!("ComplexDouble ({re:?}, {im:?})"),
                None => missing("ComplexDouble"),
            },
            U::TensorMetadata => match iv.val_as_tensor_metadata() {
                Some(t) => self.tensor(&format!("{field}.TensorMetadata"), &t),
                None => missing("TensorMetadata"),
            },
            U::String => match iv.val_as_string() {
                Some(s) => format!("String {}", show_bytes(s.data().unwrap_or("").as_bytes())),
                None => missing("String"),
            },
            U::List => match iv.val_as_list() {
                Some(l) => {
                    let items = self.ivs(&format!("{field}.List.items"), l.items());
                    format!(
                        "List {} items {items}",
                        show_bytes(l.annotation_str().unwrap_or("").as_bytes())
                    )
                }
                None => missing("List"),
            },
            U::Tuple => match iv.val_as_tuple() {
                Some(t) => format!(
                    "Tuple items {}",
                    self.ivs(&format!("{field}.Tuple.items"), t.items())
                ),
                None => missing("Tuple"),
            },
            U::Dict => match iv.val_as_dict() {
                Some(d) => {
                    let keys = self.ivs(&format!("{field}.Dict.keys"), d.keys());
                    let values = self.ivs(&format!("{field}.Dict.values"), d.values());
                    format!(
                        "Dict {} keys {keys} values {values}",
                        show_bytes(d.annotation_str().unwrap_or("").as_bytes())
                    )
                }
                None => missing("Dict"),
            },
            U::Object => match iv.val_as_object() {
                Some(o) => self.object(&field, &o),
                None => missing("Object"),
            },
            U::IntList => match iv.val_as_int_list() {
                Some(l) => {
                    let items: Vec<String> = l
                        .items()
                        .map(|v| {
                            v.iter()
                                .map(|b| support::bytes8_i64(b).to_string())
                                .collect()
                        })
                        .unwrap_or_default();
                    format!("IntList [{}]", items.join(", "))
                }
                None => missing("IntList"),
            },
            U::DoubleList => match iv.val_as_double_list() {
                Some(l) => {
                    let items: Vec<String> = l
                        .items()
                        .map(|v| {
                            v.iter()
                                .map(|b| format!("{:?}", support::bytes8_f64(b)))
                                .collect()
                        })
                        .unwrap_or_default();
                    format!("DoubleList [{}]", items.join(", "))
                }
                None => missing("DoubleList"),
            },
            U::BoolList => match iv.val_as_bool_list() {
                Some(l) => {
                    // Raw bytes: a byte other than 0/1 is shown as is, not as a bool.
                    let items: Vec<String> = l
                        .items()
                        .map(|v| {
                            v.bytes()
                                .iter()
                                .map(|b| match b {
                                    0 => "false".to_string(),
                                    1 => "true".to_string(),
                                    b => format!("byte {b}"),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    format!("BoolList [{}]", items.join(", "))
                }
                None => missing("BoolList"),
            },
            U::Device => match iv.val_as_device() {
                Some(d) => format!("Device {}", show_bytes(d.str().unwrap_or("").as_bytes())),
                None => missing("Device"),
            },
            U::EnumValue => match iv.val_as_enum_value() {
                Some(e) => {
                    let v = self.iv(&format!("{field}.EnumValue.value"), e.value());
                    format!(
                        "EnumValue {} value {v}",
                        show_bytes(e.type_name().unwrap_or("").as_bytes())
                    )
                }
                None => missing("EnumValue"),
            },
            U::Function => match iv.val_as_function() {
                Some(f) => format!(
                    "Function {} (see functions)",
                    show_bytes(f.qn().unwrap_or("").as_bytes())
                ),
                None => missing("Function"),
            },
            other => format!("!! unknown tag {}", other.0),
        }
    }

    fn object(&mut self, field: &str, o: &fb::Object<'_>) -> String {
        let ty = self.type_ref(&format!("{field}.Object.type_index"), o.type_index());
        let mut s = format!("Object {ty}");
        if o.state() != 0 {
            let st = self.iv(&format!("{field}.Object.state"), o.state());
            let _ = write!(s, " state {st}");
        }
        if o.setstate_func() != 0 {
            let f = self.iv(&format!("{field}.Object.setstate_func"), o.setstate_func());
            let _ = write!(s, " setstate_func {f}");
        }
        if let Some(attrs) = o.attrs() {
            let names = self
                .attr_names
                .get(o.type_index() as usize)
                .cloned()
                .unwrap_or_default();
            let mut parts = Vec::new();
            for (k, a) in attrs.iter().enumerate() {
                let r = self.iv(&format!("{field}.Object.attrs[{k}]"), a);
                match names.get(k) {
                    Some(n) => parts.push(format!("{n}={r}")),
                    None => parts.push(format!("?{k}={r}")),
                }
            }
            let _ = write!(s, " attrs {{{}}}", parts.join(", "));
        }
        s
    }

    fn function(&mut self, out: &mut String, k: usize, f: &fb::Function<'_>) {
        let field = format!("Module.ivalues[{k}].Function");
        let _ = writeln!(
            out,
            "  #{k} {}",
            show_bytes(f.qn().unwrap_or("").as_bytes())
        );
        let ct = self.type_ref(&format!("{field}.class_type"), f.class_type());
        let _ = writeln!(out, "    class_type: {ct}");
        let _ = writeln!(out, "    register_size: {}", f.register_size());
        if let Some(schema) = f.schema() {
            let _ = writeln!(out, "    schema:");
            for (label, args) in [("arg", schema.arguments()), ("return", schema.returns())] {
                for (j, a) in args.iter().flat_map(|v| v.iter()).enumerate() {
                    let mut line = format!(
                        "      {label} {}: {}",
                        show_bytes(a.name().unwrap_or("").as_bytes()),
                        a.type_().unwrap_or("")
                    );
                    if a.default_value() != 0 {
                        let d = self.iv(
                            &format!("{field}.schema.{label}[{j}].default_value"),
                            a.default_value(),
                        );
                        let _ = write!(line, " = {d}");
                    }
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        let handles: Vec<i64> = f
            .debug_info()
            .and_then(|d| d.debug_handle())
            .map(|v| v.iter().map(support::bytes8_i64).collect())
            .unwrap_or_default();
        let instructions: Vec<fb::Instruction> = f
            .instructions()
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        let _ = writeln!(out, "    instructions ({}):", instructions.len());
        let w = instructions.len().saturating_sub(1).to_string().len();
        for (j, ins) in instructions.iter().enumerate() {
            let name = OpCode::from_number(i64::from(ins.op()))
                .map(|o| o.name().to_string())
                .unwrap_or_else(|| {
                    self.bad(
                        &format!("{field}.instructions[{j}].op"),
                        format!("unknown opcode {}", ins.op()),
                    );
                    format!("!!op {}", ins.op())
                });
            let debug = handles
                .get(j)
                .map(|h| format!("  debug {h}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "      {j:>w$}  {name:<16} N {:<3} X {}{debug}",
                ins.n(),
                ins.x()
            );
        }
        if handles.len() != instructions.len() && !handles.is_empty() {
            let _ = writeln!(
                out,
                "      ({} debug handles for {} instructions)",
                handles.len(),
                instructions.len()
            );
        }
        let ops: Vec<fb::Operator> = f
            .operators()
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let _ = writeln!(out, "    operators ({}):", ops.len());
        for (j, o) in ops.iter().enumerate() {
            let n = o.num_args_serialized();
            let _ = writeln!(
                out,
                "      {j}  {} overload {} num_args {}",
                o.name().unwrap_or(""),
                show_bytes(o.overload_name().unwrap_or("").as_bytes()),
                if n == -1 {
                    "-1 (default)".to_string()
                } else {
                    n.to_string()
                }
            );
        }
        let consts = self.ivs(&format!("{field}.constants"), f.constants());
        let _ = writeln!(out, "    constants: {consts}");
        let anns: Vec<String> = f
            .type_annotations()
            .map(|v| v.iter().map(|s| show_bytes(s.as_bytes())).collect())
            .unwrap_or_default();
        let _ = writeln!(out, "    type_annotations: [{}]", anns.join(", "));
    }
}

pub(super) fn dump_flatbuffer(bytes: &[u8]) -> Result<Dump> {
    let m = ptconform_core::flatbuffer::read::verified_module(bytes)?;
    let ivalues: Vec<fb::IValue> = m.ivalues().map(|v| v.iter().collect()).unwrap_or_default();
    let types: Vec<fb::ObjectType> = m
        .object_types()
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let storages: Vec<fb::StorageData> = m
        .storage_data()
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let mut fb = Fb {
        buf: bytes,
        n_ivalues: ivalues.len(),
        n_types: types.len(),
        n_storages: storages.len(),
        type_names: types
            .iter()
            .map(|t| t.type_name().unwrap_or("").to_string())
            .collect(),
        attr_names: types
            .iter()
            .map(|t| {
                t.attr_names()
                    .map(|v| v.iter().map(str::to_string).collect())
                    .unwrap_or_default()
            })
            .collect(),
        problems: Vec::new(),
    };
    let mut out = String::new();
    let root = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    let _ = writeln!(out, "format: flatbuffer (PTMF)");
    let _ = writeln!(out, "file size: {}", bytes.len());
    let _ = writeln!(out, "root table offset: {root}");
    let _ = writeln!(out, "\nModule:");
    let _ = writeln!(out, "  bytecode_version: {}", m.bytecode_version());
    let _ = writeln!(out, "  operator_version: {}", m.operator_version());
    let _ = writeln!(out, "  mobile_ivalue_size: {}", m.mobile_ivalue_size());
    if m.mobile_ivalue_size() as usize > ivalues.len() {
        fb.bad(
            "Module.mobile_ivalue_size",
            format!(
                "{} is larger than the {} ivalues",
                m.mobile_ivalue_size(),
                ivalues.len()
            ),
        );
    }
    let state = fb.iv("Module.state_obj", m.state_obj());
    let _ = writeln!(out, "  state_obj: {state}");
    let methods = fb.ivs("Module.methods", m.methods());
    let _ = writeln!(out, "  methods: {methods}");
    let consts = fb.ivs("Module.jit_constants", m.jit_constants());
    let _ = writeln!(out, "  jit_constants: {consts}");
    let _ = writeln!(out, "  storage_data_size: {}", m.storage_data_size());
    if m.storage_data_size() as i64 != storages.len() as i64 {
        fb.bad(
            "Module.storage_data_size",
            format!(
                "says {} but storage_data has {} entries",
                m.storage_data_size(),
                storages.len()
            ),
        );
    }
    let _ = writeln!(out, "  ivalues: {}", ivalues.len());
    let _ = writeln!(out, "  object_types: {}", types.len());
    let _ = writeln!(out, "  storage_data: {}", storages.len());
    let _ = writeln!(
        out,
        "  extra_files: {}",
        m.extra_files().map_or(0, |v| v.len())
    );
    let _ = writeln!(
        out,
        "  jit_sources: {}",
        m.jit_sources().map_or(0, |v| v.len())
    );

    let _ = writeln!(out, "\nobject_types ({}):", types.len());
    for (k, t) in types.iter().enumerate() {
        let kind = match t.type_().0 {
            0 => "UNSET".to_string(),
            1 => "CLASS_WITH_FIELD".to_string(),
            2 => "CUSTOM_CLASS".to_string(),
            3 => "CLASS_WITH_SETSTATE".to_string(),
            4 => "NON_OBJ".to_string(),
            n => {
                fb.bad(
                    &format!("Module.object_types[{k}].type"),
                    format!("unknown TypeType {n}"),
                );
                format!("!!TypeType {n}")
            }
        };
        let names = fb.attr_names[k].join(", ");
        let _ = writeln!(
            out,
            "  #{k} {} {kind} attrs [{names}]",
            show_bytes(t.type_name().unwrap_or("").as_bytes())
        );
    }

    let _ = writeln!(out, "\nivalues ({}):", ivalues.len());
    let w = ivalues.len().saturating_sub(1).to_string().len();
    for (k, iv) in ivalues.iter().enumerate() {
        let text = fb.ivalue(k, iv);
        let mark = if k == m.mobile_ivalue_size() as usize && k != 0 {
            "  -- mobile_ivalue_size --\n"
        } else {
            ""
        };
        let _ = write!(out, "{mark}");
        let _ = writeln!(out, "  #{k:<w$} {text}");
    }

    let _ = writeln!(out, "\nfunctions:");
    for (k, iv) in ivalues.iter().enumerate() {
        if iv.val_type() == fb::IValueUnion::Function
            && let Some(f) = iv.val_as_function()
        {
            fb.function(&mut out, k, &f);
        }
    }

    let _ = writeln!(out, "\nstorage_data ({}):", storages.len());
    for (k, s) in storages.iter().enumerate() {
        let data = s.data().map(|v| v.bytes()).unwrap_or(&[]);
        let off = fb.offset_of(data) as u64;
        let _ = writeln!(
            out,
            "  #{k} offset {off} (align {}) size {} {}",
            alignment(off),
            data.len(),
            show_raw(data)
        );
    }

    let files = |v: Option<
        flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<fb::ExtraFile<'_>>>,
    >|
     -> Vec<(String, Vec<u8>)> {
        v.map(|v| {
            v.iter()
                .map(|f| {
                    (
                        f.name().unwrap_or("").to_string(),
                        f.content().map(|c| c.bytes().to_vec()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let extra = files(m.extra_files());
    let _ = writeln!(out, "\nextra_files ({}):", extra.len());
    for (name, content) in &extra {
        let _ = writeln!(
            out,
            "  {}: {}",
            show_bytes(name.as_bytes()),
            show_bytes(content)
        );
    }
    let sources = files(m.jit_sources());
    let _ = writeln!(out, "\njit_sources ({}):", sources.len());
    for (name, content) in &sources {
        let _ = writeln!(
            out,
            "== {} ({} bytes)",
            show_bytes(name.as_bytes()),
            content.len()
        );
        match std::str::from_utf8(content) {
            Ok(t) => show_text_block(&mut out, t),
            Err(_) => {
                let _ = writeln!(out, "  !! not UTF-8: {}", show_bytes(content));
                fb.bad("Module.jit_sources", format!("{name:?} is not UTF-8"));
            }
        }
    }
    for p in &fb.problems {
        let _ = writeln!(out, "!! {}: {}", p.location.record, p.message);
    }
    Ok(Dump {
        text: out,
        problems: fb.problems,
    })
}

//! Structure-aware mutation of archives, for the fuzzers' custom mutator and for
//! `conform --mutate`: parse the container, change one thing inside one record (a pickle
//! opcode or argument, a line of code, a storage's length, a flatbuffer index, union tag,
//! opcode or size), and repack it so it still gets past the container: the zip is
//! re-written with PyTorch's offsets and alignment (the changed record with a valid CRC,
//! the others copied as stored); flatbuffer fields are patched in
//! place. The shapes are the traps of `spec/README.md`: out-of-range indices, memo
//! misses, lying lengths, cycles, deep nesting, foreign globals, bad versions.

use arbitrary::Unstructured;
use bytes::Bytes;

use ptconform_core::flatbuffer::generated::mobile_bytecode as fb;
use ptconform_core::pickle::opcodes as op;
use ptconform_core::pickle::ops;
use ptconform_core::zip_archive::ZipArchiveReader;
use ptconform_core::zip_archive::write::{PyTorchZipWriter, SERIALIZATION_ID_RECORD};

/// One structure-aware mutation of `data`, or `None` when `data` is neither a readable
/// zip archive nor a verifiable flatbuffer (the caller falls back to byte mutation).
pub fn mutate(data: &[u8], u: &mut Unstructured) -> Option<Vec<u8>> {
    if ptconform_core::flatbuffer::is_flatbuffer(data) {
        mutate_flatbuffer(data, u)
    } else {
        mutate_zip(data, u)
    }
}

/// A boundary-flavoured integer: small, off-by-one, sign and width limits, or random.
fn boundary(u: &mut Unstructured, around: i64) -> i64 {
    let choices = [
        0,
        1,
        -1,
        around,
        around - 1,
        around + 1,
        i32::MAX as i64,
        i32::MIN as i64,
        u32::MAX as i64,
        i64::MAX,
        i64::MIN,
        255,
        256,
        65535,
    ];
    match u.choose(&choices) {
        Ok(v) => *v,
        Err(_) => around + 1,
    }
}

// ---------------------------------------------------------------------------------------
// Zip archives

fn mutate_zip(data: &[u8], u: &mut Unstructured) -> Option<Vec<u8>> {
    let archive = ZipArchiveReader::from_bytes(Bytes::copy_from_slice(data)).ok()?;
    let records = archive.records();
    if records.is_empty() {
        return None;
    }
    let i = u.choose_index(records.len()).ok()?;
    let name = records[i].name()?;
    let mut bytes = archive.read_record(&records[i], false).ok()?.to_vec();
    let mut keep = true;
    if name.ends_with(".pkl") {
        mutate_pickle(&mut bytes, u);
    } else if name.starts_with("code/") && name.ends_with(".py") {
        mutate_code(&mut bytes, u);
    } else if name.starts_with("data/") || name.starts_with("constants/") {
        let n = bytes.len();
        match u.int_in_range(0..=2).unwrap_or(0) {
            0 => bytes.truncate(n / 2),
            1 => bytes.clear(),
            _ => bytes.extend(std::iter::repeat_n(0u8, 8)),
        }
    } else if name == "version" || name == ".data/version" {
        let v = [
            b"0\n".as_slice(),
            b"11\n",
            b"99999999999999999999\n",
            b"-1\n",
            b"x\n",
            b"",
        ];
        bytes = u.choose(&v).map(|v| v.to_vec()).unwrap_or_default();
    } else if name == "byteorder" {
        bytes = b"big".to_vec();
    } else {
        // Anything else: drop the record (a required one missing).
        keep = false;
    }
    repack(&archive, i, keep.then_some(&bytes[..]))
}

/// Re-writes the records in order with PyTorch's container layout (offsets, 64-byte
/// alignment; the serialization id is recomputed), record `changed` replaced by `with`
/// (written with a fresh CRC, deflated where PyTorch would) or dropped. The other
/// records are copied as they are stored: a deflate stream is not inflated and deflated
/// again (that was most of a mutation's time), and its CRC is kept.
fn repack(archive: &ZipArchiveReader, changed: usize, with: Option<&[u8]>) -> Option<Vec<u8>> {
    use ptconform_core::zip_archive::read::Method;
    let mut w = PyTorchZipWriter::new(Vec::new(), archive.prefix());
    for (j, r) in archive.records().iter().enumerate() {
        let name = r.name()?;
        if name == SERIALIZATION_ID_RECORD {
            continue;
        }
        if j == changed {
            if let Some(data) = with {
                w.write_record(name, data).ok()?;
            }
            continue;
        }
        let raw = archive.raw_data(r).ok()?;
        match r.method {
            Method::Deflated => w.write_deflated_stream(name, &raw, r.crc32, r.size).ok()?,
            Method::Stored => w.write_record(name, &raw).ok()?,
            Method::Other(_) => return None,
        }
    }
    w.finish().ok()
}

/// Opcode boundaries of a pickle: (offset, opcode, argument range), from the shared
/// decoder, up to STOP or the first opcode it cannot decode.
pub fn pickle_ops(data: &[u8]) -> Vec<(usize, u8, std::ops::Range<usize>)> {
    ops::ops(data)
        .map_while(Result::ok)
        .take(1 << 20)
        .map(|o| (o.offset, o.code, o.arg_range()))
        .collect()
}

fn mutate_pickle(data: &mut Vec<u8>, u: &mut Unstructured) {
    let ops = pickle_ops(data);
    if ops.is_empty() {
        data.truncate(data.len() / 2);
        return;
    }
    let Ok(k) = u.choose_index(ops.len()) else {
        return;
    };
    let (pos, code, arg) = ops[k].clone();
    match u.int_in_range(0..=8).unwrap_or(0) {
        // An argument at a boundary: memo index, int, string length.
        0 if !arg.is_empty() => {
            // The first bytes of the argument: the value itself, or a string's length.
            let n = arg.len().min(8).min(data.len() - arg.start);
            let v = boundary(u, 0).to_le_bytes();
            data[arg.start..arg.start + n].copy_from_slice(&v[..n]);
        }
        // Delete or duplicate one opcode.
        1 => {
            data.drain(pos..arg.end);
        }
        2 => {
            let copy = data[pos..arg.end].to_vec();
            data.splice(arg.end..arg.end, copy);
        }
        // Replace the opcode byte with another one of the dialect (or a foreign one).
        3 => {
            const CODES: &[u8] = &[
                op::MARK,
                op::TUPLE,
                op::STOP,
                op::REDUCE,
                op::BUILD,
                op::APPEND,
                op::SETITEM,
                op::NEWOBJ,
                op::BINPERSID,
                op::NONE,
                op::EMPTY_DICT,
                op::EMPTY_LIST,
                0x95,
                0x94,
            ];
            data[pos] = *u.choose(CODES).unwrap_or(&op::NONE);
        }
        // A foreign or mismatched global.
        4 => {
            const GLOBALS: &[&[u8]] = &[
                b"cos\nsystem\n",
                b"cbuiltins\neval\n",
                b"ctorch._utils\n_rebuild_qtensor\n",
                b"ctorch\nDoubleStorage\n",
                b"ctorch\nQInt8Storage\n",
                b"c__torch__\nNoSuchClass\n",
                b"ctorch.jit._pickle\nbuild_intlist\n",
            ];
            let g = u.choose(GLOBALS).unwrap_or(&GLOBALS[0]).to_vec();
            if code == op::GLOBAL {
                data.splice(pos..arg.end, g);
            } else {
                data.splice(pos..pos, g);
            }
        }
        // Deep nesting: a list of lists 100,000 deep.
        5 => {
            let depth = 100_000;
            let mut nest = vec![op::EMPTY_LIST; depth];
            nest.extend(std::iter::repeat_n(op::APPEND, depth - 1));
            nest.push(op::APPEND);
            data.splice(pos..pos, nest);
        }
        // A storage that lies about its size (the numel after the location).
        6 => {
            if let Some((_, _, a)) = ops
                .iter()
                .skip(k)
                .find(|(_, c, _)| *c == op::BININT || *c == op::BININT1 || *c == op::BININT2)
            {
                let v = boundary(u, 1 << 20).to_le_bytes();
                let n = a.len().min(8);
                data[a.start..a.start + n].copy_from_slice(&v[..n]);
            }
        }
        // A value made of shared values, in place of a scalar: a list DAG whose tree is
        // 2^40 nodes, or one string fetched through the memo thousands of times (walks
        // that do not remember what they saw blow up on both).
        7 => {
            let scalar = |c: u8| {
                matches!(
                    c,
                    op::NONE
                        | op::NEWTRUE
                        | op::NEWFALSE
                        | op::BININT
                        | op::BININT1
                        | op::BININT2
                        | op::BINFLOAT
                        | op::BINUNICODE
                )
            };
            if let Some((at, _, a)) = ops.iter().skip(k).find(|(_, c, _)| scalar(*c)) {
                let shared = if u.arbitrary().unwrap_or(false) {
                    shared_list_dag(u.int_in_range(2..=40).unwrap_or(40))
                } else {
                    memo_fan_out(u.int_in_range(1..=4096).unwrap_or(4096), 10_000)
                };
                let end = a.end.max(*at + 1);
                data.splice(*at..end, shared);
            }
        }
        _ => data.truncate(pos),
    }
}

/// Memo ids far above what PyTorch's pickler numbers (it counts from 0), so the inserted
/// values never overwrite an entry the rest of the pickle fetches.
const SHARED_MEMO_BASE: u32 = 0x4000_0000;

/// Pickle ops pushing a list of `depth` levels, each holding its child twice (stored in
/// the memo once, fetched once more): a few bytes per level, 2^depth leaves.
pub fn shared_list_dag(depth: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..depth {
        out.extend([op::EMPTY_LIST, op::MARK]);
    }
    out.extend([op::BININT1, 1]);
    for level in 0..depth {
        let id = (SHARED_MEMO_BASE + level).to_le_bytes();
        out.push(op::LONG_BINPUT);
        out.extend(id);
        out.push(op::LONG_BINGET);
        out.extend(id);
        out.push(op::APPENDS);
    }
    out
}

/// Pickle ops pushing a list holding one `len`-byte string `fetches` times through the
/// memo.
pub fn memo_fan_out(len: usize, fetches: usize) -> Vec<u8> {
    let id = SHARED_MEMO_BASE.wrapping_sub(1).to_le_bytes();
    let mut out = vec![op::EMPTY_LIST, op::MARK, op::BINUNICODE];
    out.extend((len as u32).to_le_bytes());
    out.extend(std::iter::repeat_n(b'x', len));
    out.push(op::LONG_BINPUT);
    out.extend(id);
    for _ in 1..fetches {
        out.push(op::LONG_BINGET);
        out.extend(id);
    }
    out.push(op::APPENDS);
    out
}

fn mutate_code(data: &mut Vec<u8>, u: &mut Unstructured) {
    let Ok(text) = String::from_utf8(data.clone()) else {
        data.truncate(data.len() / 2);
        return;
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return;
    }
    let Ok(i) = u.choose_index(lines.len()) else {
        return;
    };
    match u.int_in_range(0..=5).unwrap_or(0) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => {
            lines[i] = lines[i]
                .replacen("Tensor", "int", 1)
                .replacen(": int", ": Tensor", 1);
        }
        3 => {
            let deep = format!("{}int{}", "List[".repeat(5000), "]".repeat(5000));
            lines[i] = format!("  deep : {deep}");
        }
        4 => {
            lines[i] = lines[i].replacen("__torch__.", "__torch__.missing.", 1);
        }
        _ => lines[i].push_str(" (("),
    }
    *data = (lines.join("\n") + "\n").into_bytes();
}

// ---------------------------------------------------------------------------------------
// Flatbuffers

/// A place in a flatbuffer to patch: byte offset, width, and the count its value
/// indexes into (for boundary values).
struct Slot {
    at: usize,
    width: usize,
    around: i64,
}

/// Where a table's vtable says `voffset` lives: zeroing those two bytes makes the field
/// absent (the flatbuffer default). PyTorch's writer always writes its offset fields and
/// its loader dereferences many of them unchecked, so absent fields are a shape worth
/// producing. (Vtables are shared between tables of equal layout, so every table using
/// this vtable loses the field.)
fn drop_slots(buf: &[u8], t: &flatbuffers::Table, voffsets: &[u16], out: &mut Vec<Slot>) {
    let Some(soffset) = buf.get(t.loc()..t.loc() + 4) else {
        return;
    };
    let vtable = t.loc() as i64 - i32::from_le_bytes(soffset.try_into().unwrap()) as i64;
    for &vo in voffsets {
        if t.vtable().get(vo) != 0 {
            out.push(Slot {
                at: (vtable + vo as i64) as usize,
                width: 2,
                around: DROP,
            });
        }
    }
}

/// `Slot::around` of a drop slot: write zero.
const DROP: i64 = i64::MIN;

fn field_at(t: &flatbuffers::Table, voffset: u16) -> Option<usize> {
    let o = t.vtable().get(voffset);
    (o != 0).then(|| t.loc() + o as usize)
}

fn vector_slots<T>(
    buf: &[u8],
    v: Option<flatbuffers::Vector<T>>,
    width: usize,
    around: i64,
    out: &mut Vec<Slot>,
) {
    if let Some(v) = v {
        let start = v.bytes().as_ptr() as usize - buf.as_ptr() as usize;
        for k in 0..v.len().min(64) {
            out.push(Slot {
                at: start + k * width,
                width,
                around,
            });
        }
        // The vector's length field itself.
        out.push(Slot {
            at: start - 4,
            width: 4,
            around: v.len() as i64,
        });
    }
}

fn flatbuffer_slots(buf: &[u8]) -> Option<Vec<Slot>> {
    let opts = flatbuffers::VerifierOptions::default();
    let m = fb::root_as_module_with_opts(&opts, buf).ok()?;
    let ivalues = m.ivalues()?;
    let n = ivalues.len() as i64;
    let types = m.object_types().map_or(0, |t| t.len()) as i64;
    let storages = m.storage_data().map_or(0, |s| s.len()) as i64;
    let mut out = Vec::new();
    let t = &m._tab;
    for (vo, around) in [
        (fb::Module::VT_STATE_OBJ, n),
        (fb::Module::VT_MOBILE_IVALUE_SIZE, n),
        (fb::Module::VT_STORAGE_DATA_SIZE, storages),
    ] {
        if let Some(at) = field_at(t, vo) {
            out.push(Slot {
                at,
                width: 4,
                around,
            });
        }
    }
    vector_slots(buf, m.methods(), 4, n, &mut out);
    vector_slots(buf, m.jit_constants(), 4, n, &mut out);
    use fb::Module as M;
    drop_slots(
        buf,
        t,
        &[
            M::VT_IVALUES,
            M::VT_OBJECT_TYPES,
            M::VT_EXTRA_FILES,
            M::VT_STORAGE_DATA,
            M::VT_METHODS,
            M::VT_JIT_SOURCES,
            M::VT_JIT_CONSTANTS,
        ],
        &mut out,
    );
    for ty in m.object_types().into_iter().flatten().take(256) {
        drop_slots(
            buf,
            &ty._tab,
            &[fb::ObjectType::VT_TYPE_NAME, fb::ObjectType::VT_ATTR_NAMES],
            &mut out,
        );
    }
    for e in m.extra_files().into_iter().flatten().take(64) {
        drop_slots(
            buf,
            &e._tab,
            &[fb::ExtraFile::VT_NAME, fb::ExtraFile::VT_CONTENT],
            &mut out,
        );
    }
    for d in m.storage_data().into_iter().flatten().take(64) {
        drop_slots(buf, &d._tab, &[fb::StorageData::VT_DATA], &mut out);
    }
    for iv in ivalues.iter().take(4096) {
        ivalue_drop_slots(buf, &iv, &mut out);
        if let Some(at) = field_at(&iv._tab, fb::IValue::VT_VAL_TYPE) {
            out.push(Slot {
                at,
                width: 1,
                around: 17,
            });
        }
        if let Some(l) = iv.val_as_list() {
            vector_slots(buf, l.items(), 4, n, &mut out);
        } else if let Some(l) = iv.val_as_tuple() {
            vector_slots(buf, l.items(), 4, n, &mut out);
        } else if let Some(d) = iv.val_as_dict() {
            vector_slots(buf, d.keys(), 4, n, &mut out);
            vector_slots(buf, d.values(), 4, n, &mut out);
        } else if let Some(o) = iv.val_as_object() {
            vector_slots(buf, o.attrs(), 4, n, &mut out);
            for (vo, around) in [
                (fb::Object::VT_TYPE_INDEX, types),
                (fb::Object::VT_STATE, n),
                (fb::Object::VT_SETSTATE_FUNC, n),
            ] {
                if let Some(at) = field_at(&o._tab, vo) {
                    out.push(Slot {
                        at,
                        width: 4,
                        around,
                    });
                }
            }
        } else if let Some(e) = iv.val_as_tensor_metadata() {
            vector_slots(buf, e.sizes(), 4, 1 << 20, &mut out);
            vector_slots(buf, e.strides(), 4, 1 << 20, &mut out);
            for (vo, width, around) in [
                (fb::TensorMetadata::VT_STORAGE_LOCATION_INDEX, 4, storages),
                (fb::TensorMetadata::VT_STORAGE_OFFSET, 4, 1 << 20),
                (fb::TensorMetadata::VT_SCALAR_TYPE, 1, 45),
            ] {
                if let Some(at) = field_at(&e._tab, vo) {
                    out.push(Slot { at, width, around });
                }
            }
        } else if let Some(f) = iv.val_as_function() {
            vector_slots(buf, f.constants(), 4, n, &mut out);
            if let Some(ins) = f.instructions() {
                let start = ins.bytes().as_ptr() as usize - buf.as_ptr() as usize;
                let ops = f.operators().map_or(0, |o| o.len()) as i64;
                for k in 0..ins.len().min(64) {
                    let base = start + k * 8;
                    out.push(Slot {
                        at: base,
                        width: 1,
                        around: 51,
                    });
                    out.push(Slot {
                        at: base + 2,
                        width: 2,
                        around: 3,
                    });
                    out.push(Slot {
                        at: base + 4,
                        width: 4,
                        around: ops,
                    });
                }
            }
            if let Some(at) = field_at(&f._tab, fb::Function::VT_REGISTER_SIZE) {
                out.push(Slot {
                    at,
                    width: 4,
                    around: 4,
                });
            }
        } else if let Some(e) = iv.val_as_enum_value()
            && let Some(at) = field_at(&e._tab, fb::EnumValue::VT_VALUE)
        {
            out.push(Slot {
                at,
                width: 4,
                around: n,
            });
        }
    }
    Some(out)
}

/// The offset fields of one ivalue (and of the table its union holds) as drop slots.
fn ivalue_drop_slots(buf: &[u8], iv: &fb::IValue, out: &mut Vec<Slot>) {
    drop_slots(buf, &iv._tab, &[fb::IValue::VT_VAL], out);
    if let Some(x) = iv.val_as_string() {
        drop_slots(buf, &x._tab, &[fb::String::VT_DATA], out);
    } else if let Some(x) = iv.val_as_device() {
        drop_slots(buf, &x._tab, &[fb::Device::VT_STR], out);
    } else if let Some(x) = iv.val_as_int_list() {
        drop_slots(buf, &x._tab, &[fb::IntList::VT_ITEMS], out);
    } else if let Some(x) = iv.val_as_double_list() {
        drop_slots(buf, &x._tab, &[fb::DoubleList::VT_ITEMS], out);
    } else if let Some(x) = iv.val_as_bool_list() {
        drop_slots(buf, &x._tab, &[fb::BoolList::VT_ITEMS], out);
    } else if let Some(x) = iv.val_as_list() {
        drop_slots(
            buf,
            &x._tab,
            &[fb::List::VT_ITEMS, fb::List::VT_ANNOTATION_STR],
            out,
        );
    } else if let Some(x) = iv.val_as_tuple() {
        drop_slots(buf, &x._tab, &[fb::Tuple::VT_ITEMS], out);
    } else if let Some(x) = iv.val_as_dict() {
        let vo = [
            fb::Dict::VT_KEYS,
            fb::Dict::VT_VALUES,
            fb::Dict::VT_ANNOTATION_STR,
        ];
        drop_slots(buf, &x._tab, &vo, out);
    } else if let Some(x) = iv.val_as_object() {
        drop_slots(buf, &x._tab, &[fb::Object::VT_ATTRS], out);
    } else if let Some(x) = iv.val_as_enum_value() {
        drop_slots(buf, &x._tab, &[fb::EnumValue::VT_TYPE_NAME], out);
    } else if let Some(x) = iv.val_as_tensor_metadata() {
        let vo = [fb::TensorMetadata::VT_SIZES, fb::TensorMetadata::VT_STRIDES];
        drop_slots(buf, &x._tab, &vo, out);
        if let Some(q) = x.quantized_schema() {
            let vo = [
                fb::QuantizedSchema::VT_SCALES,
                fb::QuantizedSchema::VT_ZERO_POINTS,
            ];
            drop_slots(buf, &q._tab, &vo, out);
        }
    } else if let Some(f) = iv.val_as_function() {
        use fb::Function as F;
        let vo = [
            F::VT_QN,
            F::VT_INSTRUCTIONS,
            F::VT_OPERATORS,
            F::VT_CONSTANTS,
            F::VT_TYPE_ANNOTATIONS,
        ];
        drop_slots(buf, &f._tab, &vo, out);
        for op in f.operators().into_iter().flatten().take(16) {
            let vo = [fb::Operator::VT_NAME, fb::Operator::VT_OVERLOAD_NAME];
            drop_slots(buf, &op._tab, &vo, out);
        }
        if let Some(schema) = f.schema() {
            let vo = [fb::Schema::VT_ARGUMENTS, fb::Schema::VT_RETURNS];
            drop_slots(buf, &schema._tab, &vo, out);
            for a in schema.arguments().into_iter().flatten().take(16) {
                drop_slots(buf, &a._tab, &[fb::Arg::VT_NAME, fb::Arg::VT_TYPE_], out);
            }
        }
    }
}

/// Every mutant that makes one present offset field absent (each vtable entry once), in
/// buffer order: the `flatbuffer-missing-field` shapes, enumerated for campaigns and tests.
pub fn field_drop_mutants(data: &[u8]) -> Vec<Vec<u8>> {
    let Some(slots) = flatbuffer_slots(data) else {
        return Vec::new();
    };
    let mut at: Vec<usize> = slots
        .iter()
        .filter(|s| s.around == DROP && s.at + 2 <= data.len())
        .map(|s| s.at)
        .collect();
    at.sort_unstable();
    at.dedup();
    at.into_iter()
        .map(|a| {
            let mut m = data.to_vec();
            m[a..a + 2].fill(0);
            m
        })
        .collect()
}

fn mutate_flatbuffer(data: &[u8], u: &mut Unstructured) -> Option<Vec<u8>> {
    let slots = flatbuffer_slots(data)?;
    if slots.is_empty() {
        return None;
    }
    let mut out = data.to_vec();
    let s = &slots[u.choose_index(slots.len()).ok()?];
    // A value from the boundaries of what the field indexes, or the slot's own
    // ivalue index (a self-reference: a cycle).
    let v = if s.around == DROP {
        [0; 8]
    } else {
        boundary(u, s.around).to_le_bytes()
    };
    if s.at + s.width <= out.len() {
        out[s.at..s.at + s.width].copy_from_slice(&v[..s.width]);
    }
    Some(out)
}

//! Every hostile input shape of `pytorch-failure-modes.md` §6 ("Top 15 input shapes",
//! the invalid ones) and of the spec's "Traps" that a reader must reject or survive is
//! rejected cleanly by `check` (no panic, no hang, bounded memory, a finding naming the
//! rule, the record and, where meaningful, the byte offset); the valid shapes among
//! them are accepted as PyTorch accepts them. Inputs are real corpus files with one
//! record or a few bytes changed, or small hand-made pickles (protocol 2).
//!
//! Shapes already covered elsewhere are not repeated here:
//!
//! | shape | covered by |
//! |---|---|
//! | 1. `Function.class_type` out of range | `malformed_flatbuffer::function_references_out_of_range` |
//! | 1. `mobile_ivalue_size > len(ivalues)`, negative `storage_data_size` | `malformed_flatbuffer::mobile_ivalue_size_and_storage_data_size` |
//! | 1. `state_obj` out of range | `malformed_flatbuffer::state_obj_out_of_range_or_not_an_object` |
//! | 1. `Object.type_index`, `setstate_func` | `malformed_flatbuffer::object_type_index_attrs_state_setstate`, `real_object_type_index_and_attr_out_of_range` |
//! | 1. `storage_location_index` | `malformed_flatbuffer::tensors_that_do_not_fit_their_storage` |
//! | 1. Dict keys/values of different lengths | `malformed_flatbuffer::dict_keys_and_values_disagree` |
//! | 1. invalid IValueUnion tag | `malformed_flatbuffer::unknown_union_tags`, `struct_union_members_out_of_range_or_misaligned` |
//! | 2. bad root / vtable offsets | `malformed_flatbuffer::root_offset_outside_the_buffer`, `table_soffset_to_vtable_outside_the_buffer`, `vtable_field_offsets_outside_the_table_and_buffer` |
//! | 2. buffers under 8 bytes, truncations (loader) | `malformed_flatbuffer::wrong_identifier`, `every_truncation_of_linear_is_rejected` |
//! | 2. `PTMF` over garbage and short buffers through `check` and `info` | **`flatbuffer_garbage_through_check_and_info`** (new) |
//! | 3. `OP` X ≥ operators, FORMAT N=0, constant/register index out of range | `malformed_flatbuffer::instruction_operands_out_of_range`, `unknown_opcodes_built` |
//! | 4. pickle stack / MARK imbalance, odd DICT, dangling BINGET | **`pickle_stack_and_mark_imbalance`** (new) |
//! | 5. BINUNICODE / BINUNICODE8 / LONG_BINPUT huge lengths | `malformed::huge_declared_sizes_do_not_allocate` |
//! | 5. BINBYTES(8), lengths one past the record | **`pickle_lengths_past_the_record`** (new) |
//! | 5. BINUNICODE8 accepted (valid side) | **`binunicode8_is_read`** (new, small); >4 GiB: `large_string::test_save_load_large_string_attribute` |
//! | 6. storage numel of 2^60 | `malformed::huge_declared_sizes_do_not_allocate` |
//! | 6. numel*itemsize overflow, numel > record, sizes/strides/offset outside or negative, quantized stride, i128 extent overflow | **`tensor_views_outside_their_storage`** (new) |
//! | 6. `_rebuild_from_type_v2`, malformed persistent-id tuples | **`rebuild_from_type_and_persistent_ids`** (new) |
//! | 7. missing `code/` file | `malformed::missing_records_are_named` |
//! | 7. corrupted `code/`, undefined types, a type defined twice | **`corrupted_code_records`** (new) |
//! | 7. 5,000-deep code | `torch_findings::kept_mutants_crash_pytorch_and_are_rejected_by_check` (`code_deep_*.pt`) |
//! | 8. truncated file, missing EOCD | `malformed::truncated_archives_are_rejected_at_every_cut` |
//! | 8. CDH sizes, name/extra lengths past EOF, CD overflow, zip64 EOCD / locator inconsistent, prepended junk | **`zip_directory_corruption`** (new) |
//! | 8. empty archive, first entry without '/' | **`empty_archive_and_entry_without_folder`** (new) |
//! | 8. `PYTORCH1` magic, legacy tar, raw legacy pickle (15.) | **`legacy_formats`** (new) |
//! | 9. wrong CRC (check) | `malformed::crc_damage_names_record_and_offset` |
//! | 9. CRC=0 / wrong CRC load as in PyTorch | **`crc_is_not_verified_on_load`** (new) |
//! | 9. streamed local headers, zip64 extras, descriptors, `FB` padding (valid) | `corpus_inspect::check_accepts_every_corpus_archive`, `roundtrip::roundtrip_of_every_corpus_archive_is_byte_identical` |
//! | 9. deflated record lying about its size | `malformed::huge_declared_sizes_do_not_allocate` |
//! | 9. unsupported compression method, encryption flag bits, duplicate names | **`zip_dialect_differentials`** (new) |
//! | 10. prefix = stem vs `archive` (valid) | `load_api::archives_saved_to_buffers_and_paths_have_their_prefixes` |
//! | 10. entries outside the prefix, mixed prefixes, nested folders (trap 12) | **`entries_outside_the_prefix`** (new) |
//! | 10. path traversal names | `malformed::path_traversal_names_are_flagged_and_never_extracted` |
//! | 11. version missing | `malformed::missing_records_are_named` |
//! | 11. version empty, "3junk", " 3", "-1", 21 digits, out of range, precedence (trap 4): read as PyTorch's `std::stoull` does; "3junk" loads (as in PyTorch) and `check` reports `version-text` | **`version_records`** (new) |
//! | 12. binary extra-file values, missing names | `load_api::extra_files_present_are_returned_as_bytes_absent_become_empty` |
//! | 12. flatbuffer returns all extra files | `flatbuffer_read::get_model_extra_files_from_buffer_follows_pytorch`, `test_save_load_flatbuffer::test_save_load_with_extra_files` |
//! | 14. SETITEM(S) / BUILD applied to tensors | **`container_opcodes_applied_to_tensors`** (new) |
//! | 15. missing `byteorder` ⇒ little; `.data/serialization_id` ignored (trap 5) | **`byteorder_and_serialization_id`** (new) |
//! | 15. `PTMF` at 4 wins over `PK\3\4` | `flatbuffer_read::ptmf_at_offset_4_wins_over_zip_as_in_pytorch` |
//! | trap 6: FRAME, unknown opcodes, foreign globals | `malformed::unknown_and_foreign_opcodes_are_rejected_with_offset`, `foreign_global_is_named_and_never_resolved` |
//! | trap 6: protocol ≠ 2, LONG1 ≠ 8 bytes, SHORT_BINUNICODE/MEMOIZE/STACK_GLOBAL | **`pickle_dialect`** (new) |
//! | deep nesting | `malformed::deep_nesting_of_100k_levels_is_refused`, `malformed_flatbuffer::deeply_nested_lists_are_rejected_quickly` |
//!
//! Not covered (no reader behaviour to test): `.debug_pkl` text/fname indices (kept as
//! bytes, never unpickled), unknown operators in method bodies (bodies are kept as
//! text), FORMAT/CONSTRUCT N larger than the stack depth (no stack simulation), a `big`
//! `byteorder` (the record is not read), `torch.load`'s `constants.pkl` dispatch and
//! `weights_only`.

use crate::common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use ptconform::check::check_bytes;
use ptconform::error::{FormatError, rules};

// ---------------------------------------------------------------------------------
// Helpers (copied from tests/hostile/malformed.rs, which is not shared)

fn linear() -> std::path::PathBuf {
    common::corpus("linear.pt")
}

fn corpus_bytes(name: &str) -> Vec<u8> {
    std::fs::read(common::corpus(name)).unwrap()
}

fn record_bytes(src: &Path, record_suffix: &str) -> Vec<u8> {
    let a = ptconform::zip_archive::ZipArchiveReader::open(src).unwrap();
    let name = a
        .record_names()
        .find(|n| format!("/{n}").ends_with(record_suffix))
        .unwrap()
        .to_string();
    a.read(&name, true).unwrap().to_vec()
}

/// Checks `bytes` under a watchdog: a hostile input must not make `check` hang. Not a
/// speed goal (those are benchmarks and growth checks): two minutes is far beyond any
/// input here, so only a check that would never end trips it, and it names itself
/// instead of stalling the whole run.
fn check(bytes: &[u8]) -> Vec<FormatError> {
    let bytes = bytes.to_vec();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(check_bytes(&bytes));
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("check hung (over 2 min)"),
        Err(e) => panic!("check panicked: {e}"),
    }
}

/// The first finding of `rule` whose record contains `record`.
fn finding(v: &[FormatError], rule: &str, record: &str) -> FormatError {
    v.iter()
        .find(|f| f.rule == rule && f.location.record.contains(record))
        .unwrap_or_else(|| panic!("expected rule {rule} on {record:?}, got {v:?}"))
        .clone()
}

/// As [`finding`], also asserting the offset and a message fragment.
fn finding_at(v: &[FormatError], rule: &str, record: &str, offset: u64, msg: &str) {
    let f = finding(v, rule, record);
    assert_eq!(f.location.offset, Some(offset), "{f:?}");
    assert!(f.message.contains(msg), "expected {msg:?} in {f:?}");
}

/// Replaces the only occurrence of `from` in `data` by `to`.
fn patch(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at: Vec<usize> = data
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "pattern {from:?} occurs {} times", at.len());
    let mut out = data[..at[0]].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&data[at[0] + from.len()..]);
    out
}

fn find(data: &[u8], pat: &[u8]) -> usize {
    data.windows(pat.len())
        .position(|w| w == pat)
        .unwrap_or_else(|| panic!("{pat:?} not found"))
}

/// `linear.pt` with `data.pkl` replaced by `pkl`, checked.
fn check_data_pkl(pkl: &[u8]) -> Vec<FormatError> {
    check(&common::replace_record(
        &linear(),
        "/data.pkl",
        pkl.to_vec(),
    ))
}

fn long1(v: i64) -> Vec<u8> {
    let mut b = vec![0x8a, 8];
    b.extend_from_slice(&v.to_le_bytes());
    b
}

fn binint(v: i32) -> Vec<u8> {
    let mut b = vec![b'J'];
    b.extend_from_slice(&v.to_le_bytes());
    b
}

fn binunicode(s: &str) -> Vec<u8> {
    let mut b = vec![b'X'];
    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
    b
}

fn u16_at(b: &[u8], p: usize) -> u16 {
    u16::from_le_bytes([b[p], b[p + 1]])
}

fn u32_at(b: &[u8], p: usize) -> u32 {
    u32::from_le_bytes(b[p..p + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], p: usize) -> u64 {
    u64::from_le_bytes(b[p..p + 8].try_into().unwrap())
}

fn put_u16(b: &mut [u8], p: usize, v: u16) {
    b[p..p + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], p: usize, v: u32) {
    b[p..p + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], p: usize, v: u64) {
    b[p..p + 8].copy_from_slice(&v.to_le_bytes());
}

/// Where the end records and the central directory of a PyTorch-written archive (no
/// comment, zip64 end records always present) are.
struct Layout {
    eocd: usize,
    locator: usize,
    zip64_eocd: usize,
    cd: usize,
}

fn layout(b: &[u8]) -> Layout {
    let eocd = b.len() - 22;
    assert_eq!(&b[eocd..eocd + 4], b"PK\x05\x06");
    let locator = eocd - 20;
    assert_eq!(&b[locator..locator + 4], b"PK\x06\x07");
    let zip64_eocd = u64_at(b, locator + 8) as usize;
    assert_eq!(&b[zip64_eocd..zip64_eocd + 4], b"PK\x06\x06");
    let cd = u64_at(b, zip64_eocd + 48) as usize;
    assert_eq!(&b[cd..cd + 4], b"PK\x01\x02");
    Layout {
        eocd,
        locator,
        zip64_eocd,
        cd,
    }
}

/// Central-directory headers as (offset, full name).
fn central_headers(b: &[u8]) -> Vec<(usize, String)> {
    let l = layout(b);
    let mut out = Vec::new();
    let mut p = l.cd;
    while p < l.zip64_eocd {
        assert_eq!(&b[p..p + 4], b"PK\x01\x02");
        let n = u16_at(b, p + 28) as usize;
        let x = u16_at(b, p + 30) as usize;
        let c = u16_at(b, p + 32) as usize;
        out.push((
            p,
            String::from_utf8_lossy(&b[p + 46..p + 46 + n]).into_owned(),
        ));
        p += 46 + n + x + c;
    }
    out
}

fn central_header(b: &[u8], suffix: &str) -> (usize, String) {
    central_headers(b)
        .into_iter()
        .find(|(_, n)| n.ends_with(suffix))
        .unwrap()
}

// ---------------------------------------------------------------------------------
// The helpers themselves: unchanged inputs are clean (or the tests below prove nothing)

#[test]
fn untouched_inputs_are_clean() {
    assert_eq!(check(&corpus_bytes("linear.pt")), vec![]);
    assert_eq!(check(&corpus_bytes("quantized.pt")), vec![]);
    let pkl = record_bytes(&linear(), "/data.pkl");
    assert_eq!(check_data_pkl(&pkl), vec![]);
    assert_eq!(central_headers(&corpus_bytes("linear.pt")).len(), 9);
}

// ---------------------------------------------------------------------------------
// 4. Pickle stack and MARK imbalance

#[test]
fn pickle_stack_and_mark_imbalance() {
    // (pickle, offset of the failing opcode, message fragment)
    let cases: &[(&[u8], u64, &str)] = &[
        (b"\x80\x02t.", 2, "no MARK"),              // TUPLE without MARK
        (b"\x80\x02l.", 2, "no MARK"),              // LIST
        (b"\x80\x02d.", 2, "no MARK"),              // DICT
        (b"\x80\x02u.", 2, "no MARK"),              // SETITEMS
        (b"\x80\x02e.", 2, "no MARK"),              // APPENDS
        (b"\x80\x02(K\x01d.", 5, "odd number"),     // the public odd-DICT PoC
        (b"\x80\x02}(K\x01u.", 6, "odd number"),    // SETITEMS, odd
        (b"\x80\x02s.", 2, "stack underflow"),      // SETITEM, empty stack
        (b"\x80\x02}Ns.", 4, "stack underflow"),    // SETITEM, one item
        (b"\x80\x02a.", 2, "stack underflow"),      // APPEND
        (b"\x80\x02b.", 2, "stack underflow"),      // BUILD
        (b"\x80\x02R.", 2, "stack underflow"),      // REDUCE
        (b"\x80\x02N(R.", 4, "stack underflow"),    // REDUCE across a MARK
        (b"\x80\x02N(\x86.", 4, "stack underflow"), // TUPLE2 across a MARK
        (b"\x80\x02\x85.", 2, "stack underflow"),   // TUPLE1
        (b"\x80\x02Q.", 2, "stack underflow"),      // BINPERSID
        (b"\x80\x02q\x00.", 2, "stack underflow"),  // BINPUT
        (b"\x80\x02h\x05.", 2, "memo id 5"),        // dangling BINGET
        (b"\x80\x02Nq\x00h\x01.", 5, "memo id 1"),
        (b"\x80\x02j\x00\x00\x00\x80.", 2, "memo id 2147483648"), // LONG_BINGET
        (b"\x80\x02N(.", 4, "at STOP"),                           // MARK left open
        (b"\x80\x02NN.", 4, "2 values"),
        (b"\x80\x02.", 2, "0 values"),
        (b"\x80\x02N", 3, "no STOP"),
        (b"\x80\x02]}s.", 4, "stack underflow"),
        (b"\x80\x02]NNs.", 5, "expected a dict"), // SETITEM on a list
        (b"\x80\x02}Na.", 4, "expected a list"),  // APPEND to a dict
        (b"\x80\x02]Nb.", 4, "expected an object"), // BUILD on a list
        (b"\x80\x02NNR.", 4, "expected a global"), // REDUCE of a value
        (b"\x80\x02N)\x81.", 4, "a class global"), // NEWOBJ of a value
    ];
    for (pkl, offset, msg) in cases {
        let v = check_data_pkl(pkl);
        let f = finding(&v, rules::PICKLE_STRUCTURE.id(), "data.pkl");
        assert_eq!(f.location.offset, Some(*offset), "{pkl:?}: {f:?}");
        assert!(
            f.message.contains(msg),
            "{pkl:?}: expected {msg:?} in {f:?}"
        );
    }
    // constants.pkl is read the same way.
    let v = check(&common::replace_record(
        &linear(),
        "/constants.pkl",
        b"\x80\x02(K\x01d.".to_vec(),
    ));
    finding_at(
        &v,
        rules::PICKLE_STRUCTURE.id(),
        "constants.pkl",
        5,
        "odd number",
    );
}

// ---------------------------------------------------------------------------------
// 14. SETITEM(S) and BUILD applied to a tensor (CVE-2026-24747)

#[test]
fn container_opcodes_applied_to_tensors() {
    let pkl = record_bytes(&linear(), "/data.pkl");
    // linear.pt's weight: GLOBAL _rebuild_tensor_v2 ... REDUCE, leaving one tensor.
    let start = find(&pkl, b"ctorch._utils\n_rebuild_tensor_v2\n");
    let end = find(&pkl, b")RtR") + 4;
    let tensor = &pkl[start..end];
    for (tail, what) in [
        (&b"NNs."[..], "expected a dict, found Tensor"),
        (b"(NNu.", "expected a dict, found Tensor"),
        (b"}b.", "expected an object, found Tensor"),
        (b"Na.", "expected a list, found Tensor"),
    ] {
        let mut p = b"\x80\x02".to_vec();
        p.extend_from_slice(tensor);
        let op = p.len() + tail.len() - 2;
        p.extend_from_slice(tail);
        let v = check_data_pkl(&p);
        finding_at(
            &v,
            rules::PICKLE_STRUCTURE.id(),
            "data.pkl",
            op as u64,
            what,
        );
    }
}

// ---------------------------------------------------------------------------------
// 5. Pickle lengths

#[test]
fn pickle_lengths_past_the_record() {
    // A length one byte more than what is left, for every length-prefixed opcode of
    // the dialect: truncation, not a read past the record.
    for (pkl, offset, what) in [
        (&b"\x80\x02X\x05\x00\x00\x00abc."[..], 2, "string data"),
        (
            b"\x80\x02\x8d\x05\x00\x00\x00\x00\x00\x00\x00abc.",
            2,
            "string data",
        ),
        (
            b"\x80\x02\x8d\x00\x00\x00\x00\x00\x00\x00\x80.",
            2,
            "string data",
        ),
        (b"\x80\x02\x8a\x08\x01\x02\x03.", 2, "LONG1 value"),
        (b"\x80\x02G\x3f\xf0.", 2, "BINFLOAT"),
        (b"\x80\x02J\x01\x02.", 2, "BININT"),
        (b"\x80\x02c__torch__\nLinear", 2, "GLOBAL name"),
        (b"\x80\x02Nr\x01\x00.", 3, "LONG_BINPUT"),
    ] {
        let v = check_data_pkl(pkl);
        finding_at(&v, rules::PICKLE_STRUCTURE.id(), "data.pkl", offset, what);
    }
    // BINBYTES, BINBYTES8 and SHORT_BINBYTES with huge lengths: not in the dialect, refused
    // before the length is read.
    for (pkl, name) in [
        (&b"\x80\x02B\xff\xff\xff\xffabc."[..], "BINBYTES"),
        (
            b"\x80\x02\x8e\xff\xff\xff\xff\xff\xff\xff\xffabc.",
            "BINBYTES8",
        ),
        (b"\x80\x02C\xffabc.", "SHORT_BINBYTES"),
        (
            b"\x80\x02\x96\xff\xff\xff\xff\xff\xff\xff\x7f.",
            "BYTEARRAY8",
        ),
    ] {
        let v = check_data_pkl(pkl);
        finding_at(&v, rules::PICKLE_OPCODE.id(), "data.pkl", 2, name);
    }
}

/// The valid side of the BINUNICODE8 shape (>4 GiB strings are written with it): a
/// small BINUNICODE8 string is read like BINUNICODE (`large_string.rs` does 4 GiB + 1).
#[test]
fn binunicode8_is_read() {
    let pkl = record_bytes(&linear(), "/data.pkl");
    let mut to = vec![0x8d];
    to.extend_from_slice(&8u64.to_le_bytes());
    to.extend_from_slice(b"training");
    let pkl = patch(&pkl, &binunicode("training"), &to);
    let bytes = common::replace_record(&linear(), "/data.pkl", pkl);
    assert_eq!(check(&bytes), vec![]);
    let m = ptconform::jit::load_from_buffer(Bytes::from(bytes), None, None).unwrap();
    assert!(matches!(
        m.root.attribute("training"),
        Some(ptconform::model::IValue::Bool(true))
    ));
}

// ---------------------------------------------------------------------------------
// Trap 6: the pickle dialect

#[test]
fn pickle_dialect() {
    let v = check_data_pkl(b"\x80\x04N.");
    finding_at(
        &v,
        rules::PICKLE_STRUCTURE.id(),
        "data.pkl",
        0,
        "protocol 4",
    );
    let v = check_data_pkl(b"N.");
    finding_at(&v, rules::PICKLE_STRUCTURE.id(), "data.pkl", 0, "PROTO 2");
    let v = check_data_pkl(b"");
    finding_at(&v, rules::PICKLE_STRUCTURE.id(), "data.pkl", 0, "PROTO 2");
    // A second PROTO with another protocol.
    let v = check_data_pkl(b"\x80\x02\x80\x03N.");
    finding_at(
        &v,
        rules::PICKLE_STRUCTURE.id(),
        "data.pkl",
        2,
        "protocol 3",
    );
    // LONG1 is always 8 bytes in the dialect.
    let v = check_data_pkl(b"\x80\x02\x8a\x02\x01\x00.");
    finding_at(&v, rules::PICKLE_STRUCTURE.id(), "data.pkl", 2, "LONG1");
    // Python-pickle opcodes PyTorch's writer never emits.
    for (pkl, name) in [
        (&b"\x80\x02\x8c\x01a."[..], "SHORT_BINUNICODE"),
        (b"\x80\x02N\x94.", "MEMOIZE"),
        (b"\x80\x02\x8c\x02os\x8c\x06system\x93.", "SHORT_BINUNICODE"),
        (
            b"\x80\x02X\x02\x00\x00\x00osX\x06\x00\x00\x00system\x93.",
            "STACK_GLOBAL",
        ),
        (b"\x80\x02I1\n.", "INT"),
        (b"\x80\x02\x8b\x01\x00\x00\x00\x01.", "LONG4"),
        (b"\x80\x02\x82\x01.", "EXT1"),
        (b"\x80\x02\x8f.", "EMPTY_FROZENSET"),
    ] {
        let v = check_data_pkl(pkl);
        let f = finding(&v, rules::PICKLE_OPCODE.id(), "data.pkl");
        assert!(f.message.contains(name), "{pkl:?}: {f:?}");
    }
}

// ---------------------------------------------------------------------------------
// 6. Tensor rebuild metadata

#[test]
fn tensor_views_outside_their_storage() {
    let pkl = record_bytes(&linear(), "/data.pkl");
    // The weight: storage data/0 of 6 floats (24 bytes), offset 0, sizes (3, 2),
    // strides (2, 1).
    let view = b"K\x00(K\x03K\x02t(K\x02K\x01t";
    let with_view = |offset: &[u8], sizes: &[&[u8]], strides: &[&[u8]]| {
        let mut to = offset.to_vec();
        to.push(b'(');
        sizes.iter().for_each(|s| to.extend_from_slice(s));
        to.extend_from_slice(b"t(");
        strides.iter().for_each(|s| to.extend_from_slice(s));
        to.push(b't');
        patch(&pkl, view, &to)
    };
    let k = |v: u8| vec![b'K', v];
    // The REDUCE of _rebuild_tensor_v2 is where the view is refused.
    let reduce_at = |p: &[u8]| (find(p, b")RtR") + 3) as u64;
    let max = long1(i64::MAX);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            with_view(&k(0), &[&k(3), &k(3)], &[&k(2), &k(1)]),
            "outside",
        ),
        (
            with_view(&k(1), &[&k(3), &k(2)], &[&k(2), &k(1)]),
            "outside",
        ),
        (with_view(&k(0), &[&k(7)], &[&k(1)]), "outside"),
        (
            with_view(&k(0), &[&k(3), &k(2)], &[&k(3), &k(1)]),
            "outside",
        ),
        (
            with_view(&binint(-1), &[&k(3), &k(2)], &[&k(2), &k(1)]),
            "offset -1",
        ),
        (
            with_view(&k(0), &[&binint(-1), &k(2)], &[&k(2), &k(1)]),
            "size -1",
        ),
        // A negative stride whose view stays inside the storage (offset 4, rows
        // backwards): PyTorch tensors never have one.
        (
            with_view(&k(4), &[&k(3), &k(2)], &[&binint(-2), &k(1)]),
            "stride -2",
        ),
        (
            with_view(&k(0), &[&k(3), &k(2)], &[&k(2)]),
            "2 sizes but 1 strides",
        ),
        (with_view(&long1(i64::MAX), &[&k(1)], &[&k(1)]), "outside"),
        // Four dimensions of (2^63 - 1) * (2^63 - 1) elements: their extents overflow
        // even an i128 sum.
        (
            with_view(&k(0), &[&max, &max, &max, &max], &[&max, &max, &max, &max]),
            "outside",
        ),
        (
            with_view(&k(0), &[&max, &max], &[&long1(i64::MIN), &long1(i64::MIN)]),
            "stride",
        ),
    ];
    for (i, (p, msg)) in cases.iter().enumerate() {
        let v = check_data_pkl(p);
        let f = finding(&v, rules::STORAGE.id(), "data.pkl");
        assert_eq!(f.location.offset, Some(reduce_at(p)), "case {i}: {f:?}");
        assert!(
            f.message.contains(msg),
            "case {i}: expected {msg:?} in {f:?}"
        );
    }
    // A size-0 dimension makes the view empty, whatever the other dimensions say.
    let p = with_view(&k(0), &[&max, &k(0)], &[&k(1), &k(1)]);
    assert_eq!(check_data_pkl(&p), vec![]);

    // numel: more elements than the 24-byte record holds, and numel * itemsize
    // wrapping to a small number (0x4000000000000001 * 4 = 4 mod 2^64).
    let at_binpersid = |p: &[u8]| (find(p, b"tQ") + 1) as u64;
    let p = patch(&pkl, b"K\x06tQ", b"K\x07tQ");
    let v = check_data_pkl(&p);
    finding_at(
        &v,
        rules::STORAGE.id(),
        "data.pkl",
        at_binpersid(&p),
        "24 bytes",
    );
    let mut to = long1(0x4000_0000_0000_0001);
    to.extend_from_slice(b"tQ");
    let p = patch(&pkl, b"K\x06tQ", &to);
    let v = check_data_pkl(&p);
    finding_at(
        &v,
        rules::STORAGE.id(),
        "data.pkl",
        at_binpersid(&p),
        "overflows",
    );
    // A record larger than numel says is what PyTorch reads too (it takes numel).
    let bytes = common::rebuild(
        &linear(),
        |n, d| {
            Some(if n.ends_with("/data/0") {
                [d, vec![0; 8]].concat()
            } else {
                d
            })
        },
        &[],
    );
    assert_eq!(check(&bytes), vec![]);

    // A quantized tensor (per-tensor affine quint8, 6 bytes) with a stride past its
    // storage (pytorch#184652).
    let q = common::corpus("quantized.pt");
    let qpkl = record_bytes(&q, "/data.pkl");
    // The first tensor (pt_quint8); pt_qint8 has the same view.
    let at = find(&qpkl, b"(K\x02K\x03t(K\x03K\x01t(c") + 10;
    let mut qpkl = qpkl;
    assert_eq!(qpkl[at - 1..=at], *b"K\x01");
    qpkl[at] = 2;
    let reduce = find(&qpkl, b")RtR") + 3;
    let v = check(&common::replace_record(&q, "/data.pkl", qpkl));
    finding_at(
        &v,
        rules::STORAGE.id(),
        "data.pkl",
        reduce as u64,
        "outside",
    );
}

#[test]
fn rebuild_from_type_and_persistent_ids() {
    // `_rebuild_from_type_v2` (torch.save's tensor subclasses), with or without the
    // GLOBALs that should follow it: never resolved.
    for pkl in [
        &b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n."[..],
        b"\x80\x02ctorch._tensor\n_rebuild_from_type_v2\n(ctorch._utils\n_rebuild_tensor_v2\nNtR.",
    ] {
        let v = check_data_pkl(pkl);
        finding_at(
            &v,
            rules::PICKLE_GLOBAL.id(),
            "data.pkl",
            2,
            "_rebuild_from_type_v2",
        );
    }
    let pkl = record_bytes(&linear(), "/data.pkl");
    let binpersid = |p: &[u8]| (find(p, b"tQ") + 1) as u64;
    let pid_cases: Vec<(Vec<u8>, &str, &str)> = vec![
        // numel missing: a 4-tuple.
        (
            patch(&pkl, b"K\x06tQ", b"tQ"),
            rules::PICKLE_STRUCTURE.id(),
            "persistent id",
        ),
        // numel a string.
        (
            patch(
                &pkl,
                b"K\x06tQ",
                &[binunicode("6"), b"tQ".to_vec()].concat(),
            ),
            rules::PICKLE_STRUCTURE.id(),
            "persistent id",
        ),
        // Not tagged 'storage'.
        (
            patch(&pkl, &binunicode("storage"), &binunicode("storagX")),
            rules::PICKLE_STRUCTURE.id(),
            "persistent id",
        ),
        // Negative numel.
        (
            patch(&pkl, b"K\x06tQ", &[binint(-1), b"tQ".to_vec()].concat()),
            rules::STORAGE.id(),
            "negative numel",
        ),
        // A location that is no device.
        (
            patch(&pkl, &binunicode("cpu"), &binunicode("cuda:x")),
            rules::STORAGE.id(),
            "cuda:x",
        ),
        // A key naming no record.
        (
            patch(&pkl, &binunicode("0"), &binunicode("9")),
            rules::STORAGE.id(),
            "data/9",
        ),
        // The key as a path out of the data folder.
        (
            patch(&pkl, &binunicode("0"), &binunicode("../data.pkl")),
            rules::STORAGE.id(),
            "",
        ),
    ];
    for (i, (p, rule, msg)) in pid_cases.iter().enumerate() {
        let v = check_data_pkl(p);
        let f = finding(&v, rule, "data.pkl");
        assert_eq!(f.location.offset, Some(binpersid(p)), "case {i}: {f:?}");
        assert!(
            f.message.contains(msg),
            "case {i}: expected {msg:?} in {f:?}"
        );
    }
    // A storage type that is not one.
    let p = patch(&pkl, b"ctorch\nFloatStorage\n", b"ctorch\nFloatStorageX\n");
    let v = check_data_pkl(&p);
    let f = finding(&v, rules::PICKLE_GLOBAL.id(), "data.pkl");
    assert!(f.message.contains("FloatStorageX"), "{f:?}");
    // BINPERSID of a value rather than a tuple.
    let v = check_data_pkl(b"\x80\x02NQ.");
    finding_at(&v, rules::PICKLE_STRUCTURE.id(), "data.pkl", 3, "BINPERSID");
}

// ---------------------------------------------------------------------------------
// 7. Code records

#[test]
fn corrupted_code_records() {
    let code = "/code/__torch__/torch/nn/modules/linear.py";
    let text = String::from_utf8(record_bytes(&linear(), code)).unwrap();
    let linear_py = "code/__torch__/torch/nn/modules/linear.py";
    let cases: Vec<(String, &str, &str)> = vec![
        // Cut mid-signature.
        (
            text[..text.find("input: Tensor").unwrap()].to_string(),
            rules::CODE_SYNTAX.id(),
            linear_py,
        ),
        // Garbage declaration line.
        (
            text.replace("bias : Tensor", "bias : Tensor ]]]"),
            rules::CODE_SYNTAX.id(),
            linear_py,
        ),
        // An attribute of a type no code file defines (pytorch#179581): its file is
        // named.
        (
            text.replace("bias : Tensor", "bias : __torch__.Missing"),
            rules::TYPE_UNKNOWN.id(),
            "code/__torch__.py",
        ),
        (
            text.replace(
                "bias : Tensor",
                "bias : __torch__.torch.nn.modules.linear.Gone",
            ),
            rules::TYPE_UNKNOWN.id(),
            linear_py,
        ),
        // The class defined twice in its file (loading into one compilation unit fails).
        (
            format!("{text}{text}"),
            rules::TYPE_REDEFINED.id(),
            linear_py,
        ),
        // The class renamed: data.pkl's class is no longer defined.
        (
            text.replace("class Linear(", "class Linear2("),
            rules::TYPE_UNKNOWN.id(),
            linear_py,
        ),
    ];
    for (t, rule, record) in cases {
        let v = check(&common::replace_record(&linear(), code, t.into_bytes()));
        finding(&v, rule, record);
    }
    // Not UTF-8: the offset is the first bad byte.
    let mut bad = text.clone().into_bytes();
    let at = text.find("weight :").unwrap();
    bad[at] = 0xff;
    let v = check(&common::replace_record(&linear(), code, bad));
    finding_at(
        &v,
        rules::CODE_ENCODING.id(),
        "code/__torch__/torch/nn/modules/linear.py",
        at as u64,
        "UTF-8",
    );
    // A code file nobody needs is still checked.
    let v = check(&common::rebuild(
        &linear(),
        |_, d| Some(d),
        &[(
            "archive/code/__torch__/unused.py",
            b"class X(Module):\n  def (\n",
        )],
    ));
    finding(&v, rules::CODE_SYNTAX.id(), "code/__torch__/unused.py");
}

// ---------------------------------------------------------------------------------
// 8. Zip container corruption

#[test]
fn zip_directory_corruption() {
    let b0 = corpus_bytes("linear.pt");
    let l = layout(&b0);
    let (last_cd, _) = *central_headers(&b0).last().unwrap();
    let (pkl_cd, pkl_name) = central_header(&b0, "/data.pkl");
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |what: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = b0.clone();
        f(&mut b);
        cases.push((what.to_string(), b));
    };
    add("CDH name length past EOF", &|b| {
        put_u16(b, last_cd + 28, 0xffff)
    });
    add("CDH extra length past EOF", &|b| {
        put_u16(b, last_cd + 30, 0xffff)
    });
    add("CDH comment length past EOF", &|b| {
        put_u16(b, last_cd + 32, 0xffff)
    });
    add("zip64 CD offset past EOF", &|b| {
        put_u64(b, l.zip64_eocd + 48, 1 << 40)
    });
    add("zip64 CD size past EOF", &|b| {
        put_u64(b, l.zip64_eocd + 40, u64::MAX - 8)
    });
    add("zip64 entry count 2^40", &|b| {
        put_u64(b, l.zip64_eocd + 24, 1 << 40);
        put_u64(b, l.zip64_eocd + 32, 1 << 40);
    });
    add("zip64 entry count one too many", &|b| {
        put_u64(b, l.zip64_eocd + 24, 10);
        put_u64(b, l.zip64_eocd + 32, 10);
    });
    add("zip64 locator past EOF", &|b| {
        put_u64(b, l.locator + 8, u64::MAX - 100)
    });
    add("zip64 locator to the wrong place", &|b| {
        let v = u64_at(b, l.locator + 8);
        put_u64(b, l.locator + 8, v - 4)
    });
    add("zip64 EOCD signature", &|b| b[l.zip64_eocd] = b'X');
    add("EOCD and zip64 counts disagree", &|b| {
        put_u16(b, l.eocd + 8, 3);
        put_u16(b, l.eocd + 10, 3);
    });
    add("CD offset into the records", &|b| {
        put_u64(b, l.zip64_eocd + 48, 64);
        put_u32(b, l.eocd + 16, 64);
    });
    add("junk prepended", &|b| {
        let mut nb = vec![b'J'; 100];
        nb.extend_from_slice(b);
        *b = nb;
    });
    add("EOCD only", &|b| {
        let e = b[l.eocd..].to_vec();
        *b = e;
    });
    let accepted: Vec<&str> = cases
        .iter()
        .filter(|(_, b)| check(b).is_empty())
        .map(|(w, _)| w.as_str())
        .collect();
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
    for (what, b) in &cases {
        let v = check(b);
        let f = &v[0];
        assert!(
            f.rule == rules::ZIP_STRUCTURE.id() || f.rule == rules::RECORD_SIZE.id(),
            "{what}: {v:?}"
        );
    }

    // Damage to one entry names that entry.
    let mut entry_cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut b = b0.clone();
    // Local header offset to a place without a local header.
    put_u32(&mut b, pkl_cd + 42, 3);
    entry_cases.push(("local header offset", b, rules::ZIP_STRUCTURE.id()));
    let mut b = b0.clone();
    put_u32(&mut b, pkl_cd + 42, 0x7fff_ffff);
    entry_cases.push(("local header offset past EOF", b, rules::ZIP_STRUCTURE.id()));
    let mut b = b0.clone();
    // Compressed (and uncompressed) size 0xFFFFFFFF with no zip64 field to resolve it.
    put_u32(&mut b, pkl_cd + 20, 0xffff_ffff);
    put_u32(&mut b, pkl_cd + 24, 0xffff_ffff);
    entry_cases.push(("CDH sizes 0xFFFFFFFF", b, rules::RECORD_SIZE.id()));
    let mut b = b0.clone();
    put_u32(&mut b, pkl_cd + 20, 0x7fff_0000);
    put_u32(&mut b, pkl_cd + 24, 0x7fff_0000);
    entry_cases.push(("CDH sizes past EOF", b, rules::RECORD_SIZE.id()));
    let mut b = b0.clone();
    put_u32(&mut b, pkl_cd + 24, 12);
    entry_cases.push(("stored sizes disagree", b, rules::RECORD_SIZE.id()));
    // The local header's extra length pushes the data past EOF.
    let mut b = b0.clone();
    let lho = u32_at(&b0, pkl_cd + 42) as usize;
    put_u16(&mut b, lho + 28, 0xffff);
    entry_cases.push(("local extra length", b, rules::RECORD_SIZE.id()));
    for (what, b, rule) in entry_cases {
        let v = check(&b);
        let f = finding(&v, rule, &pkl_name);
        assert!(f.location.offset.is_some(), "{what}: {f:?}");
    }
}

#[test]
fn empty_archive_and_entry_without_folder() {
    // An archive without entries: PyTorch says "archive does not contain any files".
    let empty = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()))
        .finish()
        .unwrap()
        .into_inner();
    let v = check(&empty);
    finding(&v, rules::RECORD_MISSING.id(), "version");
    // The first entry is not in a folder (PyTorch: "file in archive is not in a
    // subdirectory"): every entry is then outside "its" prefix.
    let prefix_less = common::rebuild(&linear(), |_, d| Some(d), &[]);
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    use std::io::Write;
    w.start_file("version", opts).unwrap();
    w.write_all(b"3\n").unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(prefix_less)).unwrap();
    for i in 0..z.len() {
        w.raw_copy_file(z.by_index_raw(i).unwrap()).unwrap();
    }
    let b = w.finish().unwrap().into_inner();
    let v = check(&b);
    let f = finding(&v, rules::ZIP_PREFIX.id(), "archive/data.pkl");
    assert!(f.location.offset.is_some());
}

#[test]
fn legacy_formats() {
    // The PYTORCH1 preview format.
    let mut b = b"PYTORCH1".to_vec();
    b.extend_from_slice(&corpus_bytes("linear.pt"));
    let v = check(&b);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].rule, rules::LEGACY_FORMAT.id());
    assert_eq!(v[0].location.offset, Some(0));
    // The legacy tar (`ustar` at 257) and raw-pickle torch.save formats: not a zip.
    let mut tar = vec![0u8; 1024];
    tar[..8].copy_from_slice(b"storages");
    tar[257..262].copy_from_slice(b"ustar");
    let mut raw = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.".to_vec();
    raw.extend_from_slice(b"\x80\x02M\xe9\x03.");
    for b in [tar, raw] {
        let v = check(&b);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].rule, rules::ZIP_STRUCTURE.id(), "{v:?}");
        assert!(v[0].message.contains("zip"), "{v:?}");
    }
}

// ---------------------------------------------------------------------------------
// 9. Zip dialect differentials

#[test]
fn crc_is_not_verified_on_load() {
    // PyTorch never verifies CRCs, and since 2.6 can write CRC = 0
    // (`compute_crc32=False`): load reads such archives; `check` names the record.
    let b0 = corpus_bytes("linear.pt");
    for crc in [0u32, 0xdead_beef] {
        let mut b = b0.clone();
        let (cd, name) = central_header(&b0, "/data.pkl");
        put_u32(&mut b, cd + 16, crc);
        let m = ptconform::jit::load_from_buffer(Bytes::from(b.clone()), None, None).unwrap();
        assert_eq!(m.named_parameters().len(), 2);
        let v = check(&b);
        finding(&v, rules::ZIP_CRC.id(), &name);
    }
}

#[test]
fn zip_dialect_differentials() {
    let b0 = corpus_bytes("linear.pt");
    let (cd, name) = central_header(&b0, "/data.pkl");
    let lho = u32_at(&b0, cd + 42) as usize;
    // An unsupported compression method (bzip2 = 12) in both headers.
    let mut b = b0.clone();
    put_u16(&mut b, cd + 10, 12);
    put_u16(&mut b, lho + 8, 12);
    let v = check(&b);
    finding(&v, rules::ZIP_COMPRESSION.id(), &name);
    // Encrypted (bit 0), strong encryption (bit 6), compressed patch data (bit 5) and a
    // masked local header (bit 13): miniz, PyTorch's reader, refuses to extract them.
    for bit in [0, 5, 6, 13] {
        let mut b = b0.clone();
        let flags = u16_at(&b0, cd + 8) | 1 << bit;
        put_u16(&mut b, cd + 8, flags);
        put_u16(&mut b, lho + 6, flags);
        let v = check(&b);
        assert!(!v.is_empty(), "flag bit {bit} accepted");
        let f = &v[0];
        assert!(f.location.record.contains("data.pkl"), "bit {bit}: {v:?}");
        assert!(f.location.offset.is_some(), "bit {bit}: {v:?}");
    }
    // The same name twice (data/1 renamed data/0 in both headers): which one PyTorch's
    // miniz finds depends on its sort, so such a file has no single meaning.
    let mut dup = b0.clone();
    let (cd1, _) = central_header(&b0, "/data/1");
    let lho1 = u32_at(&b0, cd1 + 42) as usize;
    let n = u16_at(&b0, cd1 + 28) as usize;
    dup[cd1 + 46 + n - 1] = b'0';
    dup[lho1 + 30 + n - 1] = b'0';
    let v = check(&dup);
    assert!(!v.is_empty(), "duplicate data/0 accepted");
    finding(&v, rules::ZIP_STRUCTURE.id(), "archive/data/0");
}

// ---------------------------------------------------------------------------------
// 10. Naming and layout

#[test]
fn entries_outside_the_prefix() {
    // A foreign entry after the first: PyTorch's jit loader ignores it; check flags it.
    let b = common::rebuild(&linear(), |_, d| Some(d), &[("other/data.pkl", b"x")]);
    let v = check(&b);
    let f = finding(&v, rules::ZIP_PREFIX.id(), "other/data.pkl");
    assert!(f.location.offset.is_some());
    let m = ptconform::jit::load_from_buffer(Bytes::from(b), None, None).unwrap();
    assert_eq!(m.named_parameters().len(), 2);
    // Mixed prefixes: data.pkl moved to another folder is missing from the archive.
    let b = common::rebuild(
        &linear(),
        |n, d| (!n.ends_with("/data.pkl")).then_some(d),
        &[("linear/data.pkl", &record_bytes(&linear(), "/data.pkl"))],
    );
    let v = check(&b);
    finding(&v, rules::ZIP_PREFIX.id(), "linear/data.pkl");
    let e = ptconform::jit::load_from_buffer(Bytes::from(b), None, None).unwrap_err();
    let e = e.as_format().unwrap();
    assert_eq!(e.rule, rules::RECORD_MISSING.id(), "{e}");
    assert!(e.location.record.ends_with("data.pkl"), "{e}");
    // Nested folders (trap 12): the prefix is the first folder only.
    let nested = {
        let src = common::rebuild(&linear(), |_, d| Some(d), &[]);
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(src)).unwrap();
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for i in 0..z.len() {
            use std::io::{Read, Write};
            let mut f = z.by_index(i).unwrap();
            let name = format!("outer/{}", f.name().unwrap());
            let mut d = Vec::new();
            f.read_to_end(&mut d).unwrap();
            w.start_file(name, opts).unwrap();
            w.write_all(&d).unwrap();
        }
        w.finish().unwrap().into_inner()
    };
    let v = check(&nested);
    finding(&v, rules::RECORD_MISSING.id(), "outer/version");
}

// ---------------------------------------------------------------------------------
// 11. Version records

#[test]
fn version_records() {
    let with_version = |name: &str, value: &[u8]| {
        let value = value.to_vec();
        let name = name.to_string();
        common::rebuild(
            &linear(),
            |n, d| (!n.ends_with("/version")).then_some(d),
            &[(&format!("archive/{name}"), &value)],
        )
    };
    // What PyTorch (std::stoull) cannot read, or reads as an unsupported version.
    for value in [
        &b""[..],
        b"\n",
        b"-1",
        b"0x3",
        b"123456789012345678901",
        b"99999999999999999999",
        b"\xff",
        b"0",
        b"11",
        b"18446744073709551615",
    ] {
        let v = check(&with_version("version", value));
        let f = finding(&v, rules::VERSION.id(), "version");
        assert_eq!(f.location.offset, Some(0), "{value:?}: {f:?}");
    }
    // What PyTorch 2.15 loads as version 3 (verified with torch.jit.load) but never
    // writes: loaded, and reported as `version-text`.
    for value in [&b"3junk"[..], b" 3", b"3 ", b"+3", b"0003", b"\t3"] {
        let bytes = with_version("version", value);
        let v = check(&bytes);
        assert_eq!(v.len(), 1, "{value:?}: {v:?}");
        finding(&v, rules::VERSION_TEXT.id(), "version");
        let archive = ptconform::zip_archive::read::ZipArchiveReader::from_bytes(bytes).unwrap();
        assert_eq!(archive.version().unwrap().0, 3, "{value:?}");
    }
    for value in [&b"1"[..], b"3\n", b"10"] {
        assert_eq!(
            check(&with_version("version", value)),
            vec![],
            "{value:?} refused"
        );
    }
    // `.data/version` wins over `version`, both ways.
    let b = common::rebuild(
        &linear(),
        |n, d| {
            Some(if n.ends_with("/version") {
                b"garbage".to_vec()
            } else {
                d
            })
        },
        &[("archive/.data/version", b"3\n")],
    );
    assert_eq!(check(&b), vec![]);
    let b = common::rebuild(
        &linear(),
        |_, d| Some(d),
        &[("archive/.data/version", b"99\n")],
    );
    let v = check(&b);
    let f = finding(&v, rules::VERSION.id(), ".data/version");
    assert!(f.message.contains("99"), "{f:?}");
}

// ---------------------------------------------------------------------------------
// 15. Byte order and serialization id

#[test]
fn byteorder_and_serialization_id() {
    // Missing `byteorder` means little endian (pytorch#108523): the file is fine.
    let b = common::rebuild(
        &linear(),
        |n, d| (!n.ends_with("/byteorder")).then_some(d),
        &[],
    );
    assert_eq!(check(&b), vec![]);
    // `.data/serialization_id` is ignored by readers, whatever it holds, and so is its
    // absence.
    let b = common::replace_record(
        &linear(),
        "/.data/serialization_id",
        b"\xff\x00junk".to_vec(),
    );
    assert_eq!(check(&b), vec![]);
    let b = common::rebuild(
        &linear(),
        |n, d| (!n.ends_with("serialization_id")).then_some(d),
        &[],
    );
    assert_eq!(check(&b), vec![]);
}

// ---------------------------------------------------------------------------------
// 2. Flatbuffer garbage through `check` and the unverified metadata API

#[test]
fn flatbuffer_garbage_through_check_and_info() {
    let mut inputs: Vec<Vec<u8>> = vec![
        b"\0\0\0\0PTMF".to_vec(),
        b"\x08\0\0\0PTMF".to_vec(),
        b"\xff\xff\xff\xffPTMF".to_vec(),
    ];
    // PTMF at 4 over deterministic garbage of several lengths.
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for len in [8usize, 12, 16, 64, 1000, 65536] {
        let mut b: Vec<u8> = (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect();
        b[4..8].copy_from_slice(b"PTMF");
        inputs.push(b);
    }
    // A zip whose bytes 4..8 are PTMF is read as a flatbuffer (and fails as one).
    let mut polyglot = corpus_bytes("linear.pt");
    polyglot[4..8].copy_from_slice(b"PTMF");
    inputs.push(polyglot);
    for b in &inputs {
        let v = check(b);
        // The verifier's refusal, or a field check's (both were the one `flatbuffer`).
        let f = v
            .iter()
            .find(|f| f.rule.legacy_id() == "flatbuffer" && f.location.record.contains("Module"))
            .unwrap_or_else(|| panic!("no flatbuffer finding on Module: {v:?}"));
        assert!(!f.message.is_empty());
        let e = ptconform::jit::get_flatbuffer_module_info(b).unwrap_err();
        let e = e.as_format().unwrap();
        assert_eq!(e.rule.legacy_id(), "flatbuffer", "{e}");
    }
    // Shorter than the identifier: not a flatbuffer, so a zip that is not one.
    for b in [&b""[..], b"PTM", b"\0\0\0\0PTM"] {
        let v = check(b);
        assert_eq!(v[0].rule, rules::ZIP_STRUCTURE.id(), "{v:?}");
        assert!(ptconform::jit::get_flatbuffer_module_info(b).is_err());
    }
}

/// The CLI prints `FILE: RULE: in record "..." at offset N: msg` and exits 1.
#[test]
fn cli_reports_rule_record_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd_dict.pt");
    std::fs::write(
        &path,
        common::replace_record(&linear(), "/data.pkl", b"\x80\x02(K\x01d.".to_vec()),
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let (code, out, err) = common::run_cli(&["check", file]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "{file}: pickle-structure: in record \"data.pkl\" at offset 5:"
        )),
        "{out}"
    );
}

/// Values that share children (a list holding its child twice, 48 levels: a 2^48-node
/// tree over 49 lists) cannot be written as a flatbuffer, whose writer stores every use
/// of a shared list again, as PyTorch's does: the writer refuses, saying why, at once,
/// instead of running out of memory.
#[test]
fn flatbuffer_writer_refuses_values_that_unfold_exponentially() {
    use ptconform::model::{IValue, List, Object, ObjectState, TypeExpr};
    use std::sync::Arc;
    let bytes = bytes::Bytes::from(std::fs::read(common::corpus("linear.ptl")).unwrap());
    let mut m = ptconform::flatbuffer::read_flatbuffer(&bytes, None).unwrap();
    let mut v = IValue::Int(7);
    for _ in 0..48 {
        v = IValue::List(Arc::new(List {
            elem_type: TypeExpr::Name("int".into()),
            items: vec![v.clone(), v],
        }));
    }
    let root = &m.module.root;
    let ObjectState::Attributes(attrs) = &root.state else {
        panic!("the root has attributes");
    };
    let mut attrs = attrs.clone();
    attrs[0].1 = v;
    m.module.root = Arc::new(Object {
        class: root.class.clone(),
        state: ObjectState::Attributes(attrs),
    });
    let e = ptconform::flatbuffer::write_flatbuffer(&m, &Default::default())
        .expect_err("unfolds to 2^49 values");
    assert!(e.to_string().contains("unfold"), "{e}");
}

/// `dump` of a pickle that fetches one memoized 4 MiB string 20,000 times into a list
/// (80 GB if each fetch copied and hashed it): the string is shared and summarized once,
/// and every fetch is listed with that summary.
#[test]
fn dump_shares_a_memoized_string_fetched_many_times() {
    let mut pkl = vec![0x80, 2]; // PROTO 2
    let big = vec![b'a'; 4 << 20];
    pkl.push(b'X'); // BINUNICODE
    pkl.extend((big.len() as u32).to_le_bytes());
    pkl.extend(&big);
    pkl.extend([b'q', 0]); // BINPUT 0
    pkl.extend([b']', b'(']); // EMPTY_LIST, MARK
    for _ in 0..20_000 {
        pkl.extend([b'h', 0]); // BINGET 0
    }
    pkl.extend([b'e', b'.']); // APPENDS, STOP
    let bytes = common::rebuild(
        &common::corpus("linear.pt"),
        |name, d| {
            Some(if name.ends_with("/data.pkl") {
                pkl.clone()
            } else {
                d
            })
        },
        &[],
    );
    let text = ptconform::dump::dump(&bytes).unwrap_or_else(|e| e.to_string());
    let summary = ptconform::dump::summary(&big);
    assert_eq!(text.matches(&format!("memo 0 = {summary}")).count(), 20_000);
}

//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs` are one-line wrappers, as in
//! wasm-tools), so `cargo test` runs exactly what `cargo fuzz` runs.
//!
//! Load targets take raw bytes and must never panic, hang or over-allocate: errors are
//! fine. Round-trip targets take generator input and panic on any disagreement.

use std::sync::Arc;

use arbitrary::Unstructured;
use bytes::Bytes;

use crate::generator::compare::same_model;
use crate::generator::{Config, generate, write_case};
use ptconform_core::convert::Format;
use ptconform_core::flatbuffer::{MobileModule, WriteOptions, read_flatbuffer, write_flatbuffer};
use ptconform_core::model::Storage;
use ptconform_core::zip_archive::save::{SaveOptions, save_to_buffer};
use ptconform_core::zip_archive::{ExtraFilesMap, LoadOptions, ZipArchiveReader, load_archive};

/// `zip_load`: the zip reader, loader and checker on any bytes.
pub fn zip_load(data: &[u8]) {
    // One container parse and one load serve check, inspect and save (each used to
    // parse the input again).
    let bytes = Bytes::copy_from_slice(data);
    if ptconform_core::flatbuffer::is_flatbuffer(&bytes) {
        let _ = ptconform_core::check::check_bytes(data);
        return;
    }
    let Ok(archive) = ZipArchiveReader::from_bytes(bytes) else {
        return;
    };
    let module = match ptconform_core::check::check_and_load_archive(&archive) {
        (_, Some(m)) => Ok(m),
        // check stops at a damaged container (a CRC, say), where torch.jit.load, which
        // checks no CRC, still loads: keep that path covered.
        (_, None) => load_archive(&archive, &mut LoadOptions::default()),
    };
    if let Ok(m) = module {
        let _ = ptconform_core::inspect::facts(&archive, &m);
        let _ = save_to_buffer(&m, &ExtraFilesMap::new(), &SaveOptions::default());
    }
}

/// `flatbuffer_load`: the flatbuffer reader (and what is built on it) on any bytes; the
/// identifier is forced so inputs get past the first check.
pub fn flatbuffer_load(data: &[u8]) {
    let mut bytes = data.to_vec();
    if bytes.len() >= 8 {
        bytes[4..8].copy_from_slice(b"PTMF");
    }
    let bytes = Bytes::from(bytes);
    // One read serves check, the module info and the write.
    let (_, module) = ptconform_core::check::check_and_read_flatbuffer(&bytes);
    let _ = ptconform_core::jit::get_flatbuffer_module_info(&bytes);
    if let Some(m) = module {
        let _ = m.module_info();
        let _ = write_flatbuffer(&m, &WriteOptions::default());
    }
}

/// `pickle`: the unpickler on any bytes (storages are empty CPU buffers of the asked
/// size, capped so a declared size is not trusted).
pub fn pickle(data: &[u8]) {
    let data = Bytes::copy_from_slice(data);
    if let Ok(u) = unpickle_both_ways(&data) {
        let _ = ptconform_core::pickle::pickle_value(
            &u.value,
            &|_| false,
            ptconform_core::pickle::MemoPolicy::Loaded,
        );
    }
}

/// Unpickles `data` with the tensor fast path and without (zero-filled storages) and
/// panics unless the two agree exactly: same value, same error, same memo decisions.
pub fn unpickle_both_ways(data: &Bytes) -> Result<ptconform_core::pickle::Unpickled, String> {
    use ptconform_core::pickle::read::{ReadOptions, StorageRequest, Unpickler};
    let read = |fast: bool| {
        let mut storages = |req: &StorageRequest| {
            if req.numel > 1 << 20 {
                return Err("storage too large for the fuzz target".to_string());
            }
            let size = req.numel as usize * req.dtype.element_size() as usize;
            Ok(Arc::new(Storage {
                dtype: req.dtype,
                device: req.location,
                numel: req.numel,
                data: Bytes::from(vec![0u8; size]),
            }))
        };
        let options = ReadOptions {
            tensor_fast_path: fast,
            ..ReadOptions::default()
        };
        Unpickler::new(data.clone(), &mut storages, options).run()
    };
    let (fast, general) = (read(true), read(false));
    match (&fast, &general) {
        (Ok(a), Ok(b)) => {
            assert_eq!(format!("{:?}", a.value), format!("{:?}", b.value));
            assert_eq!((a.end, a.memoized.len()), (b.end, b.memoized.len()));
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("tensor fast path {fast:?} but general machine {general:?}"),
    }
    fast.map_err(|e| e.to_string())
}

/// `code_parse`: the `code/` declaration parser and printer on any text.
pub fn code_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(defs) = ptconform_core::code::parse_source("__torch__", text) {
        let refs: Vec<&ptconform_core::model::Definition> = defs.iter().collect();
        let printed = ptconform_core::code::print_source(&refs);
        // What the printer writes, the parser reads back.
        ptconform_core::code::parse_source("__torch__", &printed)
            .unwrap_or_else(|e| panic!("printed code does not parse: {e}\n{printed}"));
    }
}

fn config_and_case(data: &[u8], format: Format) -> Option<crate::generator::Case> {
    let mut u = Unstructured::new(data);
    let config = Config::arbitrary_small(&mut u).ok()?;
    generate(&mut u, &config, format).ok()
}

fn load_zip(bytes: &[u8]) -> ptconform_core::model::ScriptModule {
    ptconform_core::jit::load_from_buffer(Bytes::copy_from_slice(bytes), None, None)
        .unwrap_or_else(|e| panic!("ptconform cannot load what it wrote: {e}"))
}

/// `roundtrip_zip`: generate → save → load → same model → save → identical bytes.
pub fn roundtrip_zip(data: &[u8]) {
    let Some(case) = config_and_case(data, Format::Zip) else {
        return;
    };
    let bytes = write_case(&case, Format::Zip).expect("generated modules save");
    let loaded = load_zip(&bytes);
    if let Err(d) = same_model(&case.tree.module, &loaded) {
        panic!("zip save → load changed the model: {d}");
    }
    let rt = ptconform_core::roundtrip::roundtrip_zip(Bytes::from(bytes)).expect("re-save");
    assert!(
        rt.difference.is_none(),
        "load → save differs: {:?}",
        rt.difference
    );
}

/// `roundtrip_flatbuffer`: the same for flatbuffers.
pub fn roundtrip_flatbuffer(data: &[u8]) {
    let Some(case) = config_and_case(data, Format::Flatbuffer) else {
        return;
    };
    let bytes = write_case(&case, Format::Flatbuffer).expect("generated modules save");
    let back = read_flatbuffer(&Bytes::from(bytes.clone()), None)
        .unwrap_or_else(|e| panic!("ptconform cannot read what it wrote: {e}"));
    if let Err(d) = same_model(&case.tree.module, &back.module) {
        panic!("flatbuffer write → read changed the model: {d}");
    }
    let again = write_flatbuffer(&back, &WriteOptions::default()).expect("re-write");
    assert!(again == bytes, "read → write changed the bytes");
}

/// `convert`: zip → flatbuffer → zip keeps the model.
pub fn convert(data: &[u8]) {
    let Some(case) = config_and_case(data, Format::Flatbuffer) else {
        return;
    };
    let zip = write_case(&case, Format::Zip).expect("generated modules save");
    let loaded = load_zip(&zip);
    let fb = write_flatbuffer(
        &MobileModule::new(loaded.clone(), case.mobile.methods.clone()),
        &WriteOptions::default(),
    )
    .expect("a loaded zip module with the generated bytecode writes as a flatbuffer");
    let fb = read_flatbuffer(&Bytes::from(fb), None).expect("reads back");
    if let Err(d) = same_model(&loaded, &fb.module) {
        panic!("zip → flatbuffer changed the model: {d}");
    }
    let zip2 = ptconform_core::convert::convert(
        Bytes::from(write_flatbuffer(&fb, &WriteOptions::default()).expect("re-write")),
        Format::Zip,
        "archive",
        ptconform_core::flatbuffer::NameMode::Unique,
    )
    .expect("flatbuffer → zip");
    if let Err(d) = same_model(&case.tree.module, &load_zip(&zip2)) {
        panic!("zip → flatbuffer → zip changed the model: {d}");
    }
}

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by name (for the test that replays the seed corpora).
pub const TARGETS: &[(&str, Target)] = &[
    ("zip_load", zip_load),
    ("flatbuffer_load", flatbuffer_load),
    ("pickle", pickle),
    ("code_parse", code_parse),
    ("roundtrip_zip", roundtrip_zip),
    ("roundtrip_flatbuffer", roundtrip_flatbuffer),
    ("convert", convert),
];

/// The custom mutator of the load targets: a structure-aware mutation of the input
/// (inside a record, container repacked), or `None` to let libFuzzer mutate bytes.
pub fn structured_mutation(data: &[u8], seed: u32) -> Option<Vec<u8>> {
    let choice = crate::generator::seed_bytes(seed as u64, data.len() as u64, 64);
    let mut u = Unstructured::new(&choice);
    crate::mutate::mutate(data, &mut u)
}

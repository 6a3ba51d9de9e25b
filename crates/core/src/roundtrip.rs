//! Load → save in the same format, keeping what PyTorch itself keeps on a re-save of a
//! loaded module, plus the archive's own prefix and serialization id.

use bytes::Bytes;

use crate::error::{FormatError, Result};
use crate::pickle::MemoPolicy;
use crate::release::{Release, WriterProfile};
use crate::zip_archive::save::{SaveOptions, save_to_writer};
use crate::zip_archive::write::extra_files_write_order;
use crate::zip_archive::{ExtraFilesMap, LoadOptions, ZipArchiveReader, load_archive};

/// Where two archives first differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The record containing the first differing byte (or a description of the layout
    /// part, e.g. `central directory`).
    pub record: String,
    /// Offset inside that record's data (or inside the file for layout parts).
    pub offset: u64,
    /// Offset in the file.
    pub file_offset: u64,
}

/// A zip archive loaded and saved again, with where the two first differ.
pub struct RoundTrip {
    /// The archive as read.
    pub original: Bytes,
    /// The archive as re-saved.
    pub rewritten: Vec<u8>,
    /// Where `rewritten` first differs from `original`; `None` when they are
    /// byte-identical.
    pub difference: Option<Difference>,
}

/// Extra files in an insertion order whose libstdc++ hash-map order is the archive's
/// order: inserting in reverse reproduces it whenever the archive was written by that
/// map (each insert lands at the front of the list or of its bucket's run).
pub fn extra_files_in_insertion_order(
    archive: &ZipArchiveReader,
) -> std::result::Result<ExtraFilesMap, FormatError> {
    let names = archive.extra_file_names();
    let mut map = ExtraFilesMap::new();
    for n in names.iter().rev() {
        map.insert(n.clone(), archive.read(&format!("extra/{n}"), false)?);
    }
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    let order: Vec<&str> = extra_files_write_order(&keys)
        .into_iter()
        .map(|i| keys[i])
        .collect();
    if order != names.iter().map(String::as_str).collect::<Vec<_>>() {
        // Not written by PyTorch's map; keep the archive order as the insertion order.
        let mut map2 = ExtraFilesMap::new();
        for n in &names {
            map2.insert(n.clone(), map[n].clone());
        }
        return Ok(map2);
    }
    Ok(map)
}

/// A zip re-saved as the release that wrote it would ([`roundtrip_zip_as`] with `None`).
pub fn roundtrip_zip(original: Bytes) -> Result<RoundTrip> {
    roundtrip_zip_as(original, None)
}

/// A zip re-saved as `release` writes it (`None`: as the release that wrote it, from
/// the records the archive shows).
pub fn roundtrip_zip_as(original: Bytes, release: Option<Release>) -> Result<RoundTrip> {
    let archive = ZipArchiveReader::from_bytes(original.clone())?;
    // Overlapping records would each be re-saved in full: refused (see
    // `ZipArchiveReader::overlap_finding`).
    if let Some(e) = archive.overlap_finding() {
        return Err(e.into());
    }
    let mut options = LoadOptions::default();
    let module = load_archive(&archive, &mut options)?;
    let extra = extra_files_in_insertion_order(&archive)?;
    let serialization_id = match archive.record(".data/serialization_id") {
        Some(r) => Some(String::from_utf8_lossy(&archive.read_record(r, false)?).into_owned()),
        None => None,
    };
    let save_options = SaveOptions {
        policy: module
            .memoized
            .clone()
            .map(MemoPolicy::Recorded)
            .unwrap_or(MemoPolicy::Loaded),
        serialization_id,
        version: Some(archive.version()?.0),
        constants_key_suffix: constants_key_suffix(&archive),
        trailing_records: trailing_records(&archive)?,
        profile: release.map_or_else(|| profile_of(&archive), Release::profile),
        ..Default::default()
    };
    let rewritten = save_to_writer(&module, Vec::new(), archive.prefix(), &extra, &save_options)?;
    let difference = first_difference(&original, &rewritten);
    Ok(RoundTrip {
        original,
        rewritten,
        difference,
    })
}

/// The writer profile the archive shows: the records its release wrote (a re-save
/// reproduces that release's file, not 2.15's).
pub fn profile_of(archive: &ZipArchiveReader) -> WriterProfile {
    WriterProfile {
        byteorder_record: archive.record("byteorder").is_some(),
        serialization_id_record: archive.record(".data/serialization_id").is_some(),
    }
}

/// `".storage"` when the archive names its constant storages `constants/N.storage`
/// (a mobile zip from `_save_for_lite_interpreter`), else `""`.
fn constants_key_suffix(archive: &ZipArchiveReader) -> &'static str {
    let mobile = archive.record_names().any(|n| {
        n.strip_prefix("constants/")
            .is_some_and(|k| k.ends_with(".storage"))
    });
    if mobile { ".storage" } else { "" }
}

/// The records between `constants.pkl` and the version record, in archive order:
/// PyTorch's writer puts there what `torch.jit.load` never reads (`bytecode.pkl` and
/// mobile debug records, traced inputs). A re-save writes them back unchanged.
fn trailing_records(
    archive: &ZipArchiveReader,
) -> std::result::Result<Vec<(String, Bytes, bool)>, FormatError> {
    let records = archive.records();
    let Some(start) = records
        .iter()
        .position(|r| r.name() == Some("constants.pkl"))
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for rec in &records[start + 1..] {
        let Some(name) = rec.name() else { continue };
        if matches!(
            name,
            "version" | ".data/version" | "byteorder" | ".data/serialization_id"
        ) {
            break;
        }
        let deflated = rec.method == crate::zip_archive::read::Method::Deflated;
        out.push((name.to_string(), archive.read_record(rec, false)?, deflated));
    }
    Ok(out)
}

/// The first differing byte, attributed to a record of `a` when it falls in one.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<Difference> {
    let pos = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))?;
    let pos = pos as u64;
    let mut found = Difference {
        record: "file layout".into(),
        offset: pos,
        file_offset: pos,
    };
    if let Ok(archive) = ZipArchiveReader::from_bytes(Bytes::copy_from_slice(a)) {
        for r in archive.records() {
            if pos >= r.data_offset && pos < r.data_offset + r.compressed_size {
                found.record = r.full_name.clone();
                found.offset = pos - r.data_offset;
                return Some(found);
            }
            if pos >= r.header_offset && pos < r.data_offset {
                found.record = format!("local header of {}", r.full_name);
                found.offset = pos - r.header_offset;
                return Some(found);
            }
        }
    }
    Some(found)
}

/// Reads a mobile flatbuffer and writes it again with ptconform's writer. PyTorch's own
/// files carry no collisions to resolve, so both name modes must give the same bytes;
/// the PyTorch-reproducing mode is used.
pub fn roundtrip_flatbuffer(original: Bytes) -> Result<RoundTrip> {
    use crate::flatbuffer::{NameMode, WriteOptions, read_flatbuffer, write_flatbuffer};
    let module = read_flatbuffer(&original, None)?;
    let rewritten = write_flatbuffer(
        &module,
        &WriteOptions {
            names: NameMode::PyTorch,
        },
    )?;
    let difference = first_difference_flatbuffer(&original, &rewritten);
    Ok(RoundTrip {
        original,
        rewritten,
        difference,
    })
}

/// The first differing byte of two flatbuffers (no records to attribute it to).
pub fn first_difference_flatbuffer(a: &[u8], b: &[u8]) -> Option<Difference> {
    let pos = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))? as u64;
    Some(Difference {
        record: "flatbuffer".into(),
        offset: pos,
        file_offset: pos,
    })
}

/// Load → save in the file's own format (detected from its bytes like PyTorch does).
pub fn roundtrip(original: Bytes) -> Result<RoundTrip> {
    roundtrip_as(original, None)
}

/// Load and save, writing what `release` writes (`None`: what the file's own release
/// wrote, as far as the file shows it).
pub fn roundtrip_as(original: Bytes, release: Option<Release>) -> Result<RoundTrip> {
    if crate::flatbuffer::is_flatbuffer(&original) {
        // Every supported release writes the same flatbuffer for a module.
        roundtrip_flatbuffer(original)
    } else {
        roundtrip_zip_as(original, release)
    }
}

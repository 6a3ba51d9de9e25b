//! The zip archive dump: every record's header and data, `.pkl` records disassembled
//! ([`super::disassembler`]).

use super::disassembler::disassemble;
use super::*;

fn method_name(m: Method) -> String {
    match m {
        Method::Stored => "stored".into(),
        Method::Deflated => "deflated".into(),
        Method::Other(n) => format!("method {n}"),
    }
}

pub(super) fn dump_zip(bytes: &[u8]) -> Result<Dump> {
    let archive = ZipArchiveReader::from_bytes(Bytes::copy_from_slice(bytes))?;
    let mut out = String::new();
    let mut problems = Vec::new();
    let records = archive.records();
    let _ = writeln!(out, "format: zip");
    let _ = writeln!(out, "file size: {}", bytes.len());
    let _ = writeln!(out, "prefix: {:?}", archive.prefix());
    match archive.version() {
        Ok((v, name)) => {
            let _ = writeln!(out, "version: {v} (record {name})");
        }
        Err(e) => {
            let _ = writeln!(out, "version: !! {}", e.message);
            problems.push(e);
        }
    }
    for (label, name) in [
        ("byteorder", "byteorder"),
        ("serialization_id", ".data/serialization_id"),
    ] {
        match archive.record(name) {
            None => {
                let _ = writeln!(out, "{label}: (absent)");
            }
            Some(rec) => match archive.read_record(rec, false) {
                Ok(d) => {
                    let _ = writeln!(out, "{label}: {}", show_bytes(&d));
                }
                Err(e) => {
                    let _ = writeln!(out, "{label}: !! {}", e.message);
                }
            },
        }
    }

    let _ = writeln!(out, "\nrecords ({}):", records.len());
    let width = records.len().saturating_sub(1).to_string().len();
    for (i, r) in records.iter().enumerate() {
        let sizes = match r.method {
            Method::Stored => format!("stored   size {}", r.size),
            m => format!(
                "{} size {} compressed {}",
                method_name(m),
                r.size,
                r.compressed_size
            ),
        };
        let _ = writeln!(
            out,
            "  #{i:<width$} header {} data {} (lfh {}, align {}) {sizes} crc32 {:08x} flags {:#06x}  {}",
            r.header_offset,
            r.data_offset,
            r.data_offset.saturating_sub(r.header_offset),
            alignment(r.data_offset),
            r.crc32,
            r.flags,
            show_name(r),
        );
    }

    for r in records {
        let _ = writeln!(out);
        dump_record(&archive, r, &mut out, &mut problems);
    }
    Ok(Dump {
        text: out,
        problems,
    })
}

fn show_name(r: &Record) -> String {
    if r.full_name
        .chars()
        .all(|c| !c.is_control() && c != '"' && c != '\\')
    {
        r.full_name.clone()
    } else {
        format!("{:?}", r.full_name)
    }
}

fn dump_record(
    archive: &ZipArchiveReader,
    r: &Record,
    out: &mut String,
    problems: &mut Vec<FormatError>,
) {
    let data = match archive.read_record(r, false) {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(out, "== {}\n  !! {}", show_name(r), e.message);
            problems.push(e);
            return;
        }
    };
    let crc_note = match r.crc_mismatch(&data) {
        None => String::new(),
        Some(e) => {
            let note = format!("\n  !! {}", e.message);
            problems.push(e);
            note
        }
    };
    let Some(name) = r.name() else {
        let _ = writeln!(
            out,
            "== {} (outside the prefix folder: ignored by loaders){crc_note}\n  {}",
            show_name(r),
            show_bytes(&data)
        );
        return;
    };
    if let Some(extra) = name.strip_prefix("extra/") {
        // Whatever its name (`data.pkl`, `x.debug_pkl`): user bytes, not a pickle.
        let _ = writeln!(
            out,
            "== {} (extra file {}){crc_note}\n  {}",
            show_name(r),
            show_bytes(extra.as_bytes()),
            show_bytes(&data)
        );
    } else if name.ends_with(".debug_pkl") {
        let _ = writeln!(
            out,
            "== {} (debug pickle){crc_note}\n  {}",
            show_name(r),
            summary(&data)
        );
    } else if name.ends_with(".pkl") {
        let _ = writeln!(
            out,
            "== {} (pickle, {} bytes){crc_note}",
            show_name(r),
            data.len()
        );
        let storage_dir = match name {
            "data.pkl" => "data",
            "traced_inputs.pkl" => "traced_inputs",
            // constants.pkl, and a mobile zip's bytecode.pkl (which names the constants).
            _ => "constants",
        };
        disassemble(archive, &data, storage_dir, r, out, problems);
    } else if name.starts_with("code/") && name.ends_with(".py") {
        let _ = writeln!(
            out,
            "== {} (code, {} bytes){crc_note}",
            show_name(r),
            data.len()
        );
        match ptconform_core::code::source_text(&r.full_name, &data) {
            Ok(t) => show_text_block(out, t),
            Err(e) => {
                let _ = writeln!(out, "  !! {}\n  {}", e.message, show_bytes(&data));
                problems.push(e);
            }
        }
    } else if name.starts_with("data/") || name.starts_with("constants/") {
        let _ = writeln!(
            out,
            "== {} (storage){crc_note}\n  {}",
            show_name(r),
            show_raw(&data)
        );
    } else {
        let kind = match name {
            "version" | ".data/version" => "version",
            "byteorder" => "byteorder",
            ".data/serialization_id" => "serialization id",
            _ => "other",
        };
        let _ = writeln!(
            out,
            "== {} ({kind}){crc_note}\n  {}",
            show_name(r),
            show_bytes(&data)
        );
    }
}

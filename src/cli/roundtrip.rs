//! `ptconform roundtrip`: load, save, and compare byte for byte.

use super::*;

pub(super) fn run(file: &Path, out: Option<&Path>, release: Option<Release>) -> i32 {
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) => return report_error(file, &Error::io(file.display().to_string(), e)),
    };
    let rt = match ptconform_core::roundtrip::roundtrip_as(bytes::Bytes::from(data), release) {
        Ok(rt) => rt,
        Err(e) => return report_error(file, &e),
    };
    if let Some(out) = out {
        let write = ptconform_core::atomic_file::write(out, &rt.rewritten);
        if let Err(e) = write {
            eprintln!("{}: error: {e}", out.display());
            return EXIT_USAGE;
        }
    }
    match rt.difference {
        None => {
            println!("identical");
            EXIT_OK
        }
        Some(d) => {
            println!(
                "differs: first difference in {} at offset {} (file offset {}); original {} bytes, re-saved {} bytes",
                d.record,
                d.offset,
                d.file_offset,
                rt.original.len(),
                rt.rewritten.len()
            );
            EXIT_FINDING
        }
    }
}

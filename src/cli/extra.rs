//! `ptconform extra`: list, print or extract the extra files.

use super::*;

/// Where `extra` takes extra files from: a zip archive's `extra/` records or a
/// flatbuffer's `Module.extra_files`.
enum ExtraSource {
    Zip(ZipArchiveReader),
    /// `(name, content)` in file order; a name stored twice keeps its last content, as
    /// PyTorch's loader assigns them one by one.
    Flatbuffer(Vec<(String, Bytes)>),
}

impl ExtraSource {
    fn open(file: &Path) -> Result<Self, Error> {
        let data = map_file(file)?;
        Ok(match file_format(&data) {
            FileFormat::Flatbuffer => {
                let mut files: Vec<(String, Bytes)> = Vec::new();
                for (name, content) in ptconform_core::jit::flatbuffer_extra_files(&data)? {
                    match files.iter_mut().find(|(n, _)| *n == name) {
                        Some(slot) => slot.1 = content,
                        None => files.push((name, content)),
                    }
                }
                ExtraSource::Flatbuffer(files)
            }
            FileFormat::Zip => ExtraSource::Zip(ZipArchiveReader::from_bytes(data)?),
        })
    }

    /// Names in file order.
    fn names(&self) -> Vec<String> {
        match self {
            ExtraSource::Zip(a) => a.extra_file_names(),
            ExtraSource::Flatbuffer(files) => files.iter().map(|(n, _)| n.clone()).collect(),
        }
    }

    fn size(&self, name: &str) -> u64 {
        match self {
            ExtraSource::Zip(a) => a.record(&format!("extra/{name}")).map_or(0, |r| r.size),
            ExtraSource::Flatbuffer(files) => files
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, d)| d.len() as u64),
        }
    }

    /// The bytes of `name` (`None` if absent); zip records are CRC-checked when
    /// `verify_crc`.
    fn read(&self, name: &str, verify_crc: bool) -> Option<Result<Bytes, Error>> {
        match self {
            ExtraSource::Zip(a) => a
                .record(&format!("extra/{name}"))
                .map(|rec| a.read_record(rec, verify_crc).map_err(Error::Format)),
            ExtraSource::Flatbuffer(files) => files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, d)| Ok(d.clone())),
        }
    }
}

pub(super) fn run(file: &Path, name: Option<&str>, out_dir: Option<&Path>) -> i32 {
    let source = match ExtraSource::open(file) {
        Ok(s) => s,
        Err(e) => return report_error(file, &e),
    };
    let names = source.names();
    if let Some(name) = name {
        return match source.read(name, false) {
            None => {
                eprintln!("{}: no extra file {name:?}", file.display());
                EXIT_FINDING
            }
            Some(Ok(data)) => {
                let mut out = std::io::stdout().lock();
                if out.write_all(&data).and_then(|_| out.flush()).is_err() {
                    return EXIT_USAGE;
                }
                EXIT_OK
            }
            Some(Err(e)) => report_error(file, &e),
        };
    }
    if let Some(dir) = out_dir {
        return extract_all(&source, &names, dir, file);
    }
    for n in &names {
        println!("{:>12}  {n}", source.size(n));
    }
    EXIT_OK
}

/// Extracts every extra file under `dir`. Names that would land outside `dir` (absolute,
/// `..`, backslashes, NUL, a directory that is a link leading out) are refused; each file
/// is written to a temporary name and renamed, so nothing is left half-written, and a
/// link already at a file's name is replaced, never followed.
fn extract_all(source: &ExtraSource, names: &[String], dir: &Path, file: &Path) -> i32 {
    // Entries sharing one record would each be written in full: refused, as the output
    // would grow with the entries times the record, not with the file.
    if let ExtraSource::Zip(archive) = source
        && let Some(e) = archive.overlap_finding()
    {
        return report_error(file, &e.into());
    }
    let mut code = EXIT_OK;
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("{}: error: {e}", dir.display());
        return EXIT_USAGE;
    }
    let root = match dir.canonicalize() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}: error: {e}", dir.display());
            return EXIT_USAGE;
        }
    };
    for n in names {
        if ptconform_core::check::is_unsafe_name(n) {
            eprintln!(
                "{}: refusing extra file {n:?}: it would be written outside {}",
                file.display(),
                dir.display()
            );
            code = EXIT_FINDING;
            continue;
        }
        let data = match source.read(n, true) {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                code = report_error(file, &e).max(code);
                continue;
            }
            None => continue,
        };
        let target = root.join(n);
        let parent = target.parent().unwrap_or(&root).to_path_buf();
        let written = std::fs::create_dir_all(&parent).and_then(|_| {
            // A symlink inside `dir` must not redirect the write elsewhere.
            let real_parent = parent.canonicalize()?;
            if !real_parent.starts_with(&root) {
                return Err(std::io::Error::other("path leaves the output directory"));
            }
            // The temporary name is unpredictable and created exclusively (a planted
            // link cannot catch the bytes), and the rename replaces a link planted at the
            // final name instead of writing through it.
            ptconform_core::atomic_file::write(
                &real_parent.join(target.file_name().unwrap_or_default()),
                &data,
            )
        });
        match written {
            Ok(()) => println!("{}", target.display()),
            Err(e) => {
                eprintln!("{}: cannot write extra file {n:?}: {e}", file.display());
                code = EXIT_USAGE.max(code);
            }
        }
    }
    code
}

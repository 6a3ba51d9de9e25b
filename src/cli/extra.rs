//! `ptconform extra`: list, print or extract the extra files.

use super::*;
use ptconform_core::display::escaped;

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

    /// False for a zip record name that is not UTF-8 (`name` shows it with U+FFFD).
    fn name_is_utf8(&self, name: &str) -> bool {
        match self {
            ExtraSource::Zip(a) => a
                .record(&format!("extra/{name}"))
                .is_none_or(|r| r.name_is_utf8()),
            ExtraSource::Flatbuffer(_) => true,
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
                eprintln!("{}: no extra file \"{}\"", file.display(), escaped(name));
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
        println!("{:>12}  {}", source.size(n), escaped(n));
    }
    EXIT_OK
}

/// Extracts every extra file under `dir`, by the name rule `check` applies
/// ([`name_problem`](ptconform_core::check::name_problem), README "Extra-file names"):
/// a name it refuses, a name that is not UTF-8 (never written renamed) and a name that is
/// also another one's directory are refused; each file is written relative to its
/// directory's handle without following links, to an unnamed temporary then linked in,
/// so nothing lands outside `dir` and nothing is left half-written.
fn extract_all(source: &ExtraSource, names: &[String], dir: &Path, file: &Path) -> i32 {
    // Entries sharing one record would each be written in full: refused, as the output
    // would grow with the entries times the record, not with the file.
    if let ExtraSource::Zip(archive) = source
        && let Some(e) = archive.overlap_finding()
    {
        return report_error(file, &e.into());
    }
    let mut code = EXIT_OK;
    let mut out = match ptconform_core::extract::Extractor::new(dir) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{}: error: {e}", escaped(&dir.display().to_string()));
            return EXIT_USAGE;
        }
    };
    let shown_file = file.display().to_string();
    let shown_file = escaped(&shown_file);
    let conflicts: std::collections::HashMap<usize, String> =
        ptconform_core::check::name_set_problems(names.iter().map(String::as_str))
            .into_iter()
            .collect();
    for (i, n) in names.iter().enumerate() {
        let why = if !source.name_is_utf8(n) {
            Some("is not UTF-8: it is not written under another name".to_string())
        } else if let Some(why) = ptconform_core::check::name_problem(n) {
            Some(why.to_string())
        } else {
            conflicts.get(&i).cloned()
        };
        if let Some(why) = why {
            eprintln!(
                "{shown_file}: refusing extra file \"{}\": its name {why}",
                escaped(n)
            );
            code = EXIT_FINDING.max(code);
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
        match out.write(n, &data) {
            Ok(()) => println!("{}", escaped(&dir.join(n).display().to_string())),
            Err(e) => {
                eprintln!(
                    "{shown_file}: cannot write extra file \"{}\": {e}",
                    escaped(n)
                );
                code = EXIT_USAGE.max(code);
            }
        }
    }
    code
}

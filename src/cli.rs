//! The `ptconform` command line.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use bytes::Bytes;

use crate::check;
use crate::error::Error;
use crate::inspect;
use crate::jit::{FileFormat, file_format, map_file};
use crate::model::Device;
use crate::release::Release;
use crate::zip_archive::ZipArchiveReader;

/// Exit codes: 0 = success / conforming, 1 = non-conforming input or "not found",
/// 2 = usage or I/O error.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FINDING: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "ptconform",
    version,
    about = "Conformance harness for PyTorch TorchScript archives"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the module as `torch.jit.load` sees it.
    Inspect {
        file: PathBuf,
        /// Print one JSON object (the documented facts).
        #[arg(long)]
        json: bool,
        /// Load as with `map_location` (e.g. `cpu`): non-meta storages move there.
        #[arg(long)]
        map_location: Option<String>,
    },
    /// Print a mobile file's module info as JSON: a flatbuffer's (`get_flatbuffer_module_info`)
    /// or a mobile zip's, from its `bytecode.pkl`.
    Info { file: PathBuf },
    /// Validate files against the format; prints `FILE: RULE: message` per violation.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also say what this older PyTorch release (2.0 to 2.14) cannot read that 2.15
        /// reads (rule `release-dtype`).
        #[arg(long, value_name = "VERSION")]
        for_pytorch: Option<Release>,
    },
    /// Load and save in the same format; print `identical` or the first difference.
    Roundtrip {
        file: PathBuf,
        /// Also write the re-saved archive here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write what this PyTorch release (2.0 to 2.15) writes (default: the release that
        /// wrote FILE, as far as its records show).
        #[arg(long, value_name = "VERSION")]
        as_pytorch: Option<crate::release::Release>,
    },
    /// Convert between the zip archive, the mobile zip and the mobile flatbuffer (where
    /// the content allows: a `torch.jit.save` archive holds no bytecode, so it cannot
    /// become a flatbuffer or a mobile zip; a mobile zip and a flatbuffer convert into
    /// each other).
    Convert {
        input: PathBuf,
        output: PathBuf,
        /// Output format; by default from OUTPUT's extension (`.ptl` = flatbuffer), else
        /// the other format than INPUT's.
        #[arg(long, value_enum)]
        format: Option<crate::convert::Target>,
        /// Reproduce PyTorch's flatbuffer writer, which merges classes that share a
        /// qualified name (the default gives them unique names, as the zip writer does).
        #[arg(long)]
        pytorch_names: bool,
        /// Write what this PyTorch release (2.0 to 2.15) writes (default: 2.15; a zip
        /// converted to a zip keeps its own release's layout).
        #[arg(long, value_name = "VERSION")]
        as_pytorch: Option<crate::release::Release>,
    },
    /// The differential campaign: every corpus archive checks, inspects as PyTorch
    /// reported and round-trips; generated cases round-trip, and with `--torch` load in
    /// real PyTorch with the predicted facts while PyTorch's re-saves load back in
    /// ptconform as the same model. Exit 1 on any disagreement.
    Conform {
        #[arg(long, default_value_t = 100)]
        cases: u64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// What each case is written as (default: all three file kinds).
        #[arg(long, value_enum, default_value_t = GenFormat::All)]
        format: GenFormat,
        /// PyTorch's python (e.g. `$(bash oracle/setup.sh)`); without it, ptconform only.
        #[arg(long)]
        torch: Option<PathBuf>,
        /// Run shard I of N (`--shard 0/4`): cases with index % N == I.
        #[arg(long, value_parser = parse_shard, default_value = "0/1")]
        shard: (u64, u64),
        /// Write each failing case (shrunk generator input, archive, facts) here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The PyTorch-made corpus to check first.
        #[arg(long, default_value = "corpus")]
        corpus: PathBuf,
        /// Generator settings (JSON, see `gen --config`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also check N structure-aware mutants of every corpus archive; with `--torch`,
        /// every mutant on which PyTorch crashes, hangs or exhausts memory is reported
        /// (and kept in `--out`).
        #[arg(long, default_value_t = 0)]
        mutate: u64,
        /// Also run a real-model corpus (`corpus/models`, or the full set
        /// `oracle/make_models.py` writes to `~/.cache/ptconform/models`): facts, check,
        /// byte-identical re-save, twin diff, and with `--torch` PyTorch loading each
        /// flatbuffer converted to a zip.
        #[arg(long)]
        models: Option<PathBuf>,
        /// Write the generated cases as this PyTorch release (2.0 to 2.15) writes them;
        /// `--torch` should then be that release's python (`oracle/setup.sh VERSION`).
        #[arg(long, value_name = "VERSION")]
        as_pytorch: Option<Release>,
    },
    /// Generate random modules (test vectors): archives plus, beside each, the JSON that
    /// `inspect --json` must print for it. The same seed gives the same bytes.
    Gen {
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 10)]
        count: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = GenFormat::Both)]
        format: GenFormat,
        /// A JSON file with generator settings (`generator::Config`; absent keys keep
        /// their defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write what this PyTorch release (2.0 to 2.15) writes (default: 2.15).
        #[arg(long, value_name = "VERSION")]
        as_pytorch: Option<crate::release::Release>,
    },
    /// Print a deterministic, human-readable layout of an archive: zip records with
    /// offsets, alignment, sizes and CRCs, pickle disassembly, code; or every field of a
    /// mobile flatbuffer. Exit 1 (after printing what could be read) on damaged input.
    Dump { file: PathBuf },
    /// Compare two archives by meaning (module tree, tensors, attributes, code, extra
    /// files, layout), in either format. Exit 0 when equal, 1 when not.
    Diff {
        a: PathBuf,
        b: PathBuf,
        /// Print one JSON object (`equal`, `differences`).
        #[arg(long)]
        json: bool,
    },
    /// List extra files, print one, or extract all.
    Extra {
        file: PathBuf,
        /// Write this extra file's bytes to stdout (exit 1 if absent).
        name: Option<String>,
        /// Extract every extra file under this directory.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 0/4")?;
    let (i, n): (u64, u64) = (
        i.parse().map_err(|e| format!("{e}"))?,
        n.parse().map_err(|e| format!("{e}"))?,
    );
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: need 0 <= I < N"));
    }
    Ok((i, n))
}

fn read_config(config: Option<&Path>) -> Result<crate::generator::Config, i32> {
    match config {
        None => Ok(Default::default()),
        Some(p) => std::fs::read(p)
            .map_err(|e| e.to_string())
            .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
            .map_err(|e| {
                eprintln!("{}: error: {e}", p.display());
                EXIT_USAGE
            }),
    }
}

fn formats(format: GenFormat) -> Vec<crate::generator::Output> {
    use crate::convert::Format;
    use crate::generator::Output;
    match format {
        GenFormat::Zip => vec![Output::Format(Format::Zip)],
        GenFormat::Flatbuffer => vec![Output::Format(Format::Flatbuffer)],
        GenFormat::MobileZip => vec![Output::MobileZip],
        GenFormat::Both => vec![
            Output::Format(Format::Zip),
            Output::Format(Format::Flatbuffer),
        ],
        GenFormat::All => vec![
            Output::Format(Format::Zip),
            Output::Format(Format::Flatbuffer),
            Output::MobileZip,
        ],
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GenFormat {
    Zip,
    Flatbuffer,
    /// The flatbuffer case as a mobile zip (`_save_for_lite_interpreter`'s layout).
    MobileZip,
    /// Zip and flatbuffer.
    Both,
    /// Zip, flatbuffer and mobile zip.
    All,
}

pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Inspect {
            file,
            json,
            map_location,
        } => cmd_inspect(&file, json, map_location.as_deref()),
        Command::Info { file } => cmd_info(&file),
        Command::Check { files, for_pytorch } => cmd_check(&files, for_pytorch),
        Command::Extra {
            file,
            name,
            out_dir,
        } => cmd_extra(&file, name.as_deref(), out_dir.as_deref()),
        Command::Roundtrip {
            file,
            out,
            as_pytorch,
        } => cmd_roundtrip(&file, out.as_deref(), as_pytorch),
        Command::Dump { file } => cmd_dump(&file),
        Command::Diff { a, b, json } => cmd_diff(&a, &b, json),
        Command::Conform {
            cases,
            seed,
            format,
            torch,
            shard,
            out,
            corpus,
            config,
            mutate,
            models,
            as_pytorch,
        } => {
            let config = match read_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let mut config = config;
            if let Some(release) = as_pytorch {
                config.release = release;
            }
            let options = crate::conform::Options {
                cases,
                seed,
                formats: formats(format),
                torch,
                shard,
                out,
                corpus: corpus.is_dir().then_some(corpus),
                config: config.bounded(),
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                mutate,
                models,
            };
            cmd_conform(&options)
        }
        Command::Gen {
            seed,
            count,
            out,
            format,
            config,
            as_pytorch,
        } => cmd_gen(seed, count, &out, format, config.as_deref(), as_pytorch),
        Command::Convert {
            input,
            output,
            format,
            pytorch_names,
            as_pytorch,
        } => cmd_convert(&input, &output, format, pytorch_names, as_pytorch),
    }
}

fn report_error(file: &Path, e: &Error) -> i32 {
    match e {
        Error::Io { source, .. } => {
            eprintln!("{}: error: {source}", file.display());
            EXIT_USAGE
        }
        Error::Format(f) => {
            eprintln!(
                "{}: {}: {}: {}",
                file.display(),
                f.rule,
                f.location,
                f.message
            );
            EXIT_FINDING
        }
    }
}

fn cmd_inspect(file: &Path, json: bool, map_location: Option<&str>) -> i32 {
    let map_location = match map_location.map(Device::parse).transpose() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --map-location: {e}");
            return EXIT_USAGE;
        }
    };
    let result = map_file(file).and_then(|data| inspect::facts_of_bytes(data, map_location));
    match result {
        Ok(facts) => {
            let text = if json {
                serde_json::to_string_pretty(&facts).unwrap_or_default() + "\n"
            } else {
                inspect::report(&facts)
            };
            let _ = std::io::stdout().write_all(text.as_bytes());
            EXIT_OK
        }
        Err(e) => report_error(file, &e),
    }
}

fn cmd_info(file: &Path) -> i32 {
    let info = map_file(file).and_then(|data| crate::jit::get_model_info(&data));
    match info {
        Ok(info) => match serde_json::to_string_pretty(&info) {
            Ok(text) => {
                let mut out = std::io::stdout().lock();
                if out
                    .write_all(text.as_bytes())
                    .and_then(|_| out.write_all(b"\n"))
                    .is_err()
                {
                    return EXIT_USAGE;
                }
                EXIT_OK
            }
            Err(e) => {
                eprintln!("{}: error: {e}", file.display());
                EXIT_USAGE
            }
        },
        Err(e) => report_error(file, &e),
    }
}

fn cmd_check(files: &[PathBuf], release: Option<Release>) -> i32 {
    let mut code = EXIT_OK;
    for file in files {
        let targets: Vec<PathBuf> = if file.is_dir() {
            let mut v: Vec<PathBuf> = match std::fs::read_dir(file) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "pt" || e == "ptl"))
                    .collect(),
                Err(e) => {
                    eprintln!("{}: error: {e}", file.display());
                    code = EXIT_USAGE;
                    continue;
                }
            };
            v.sort();
            v
        } else {
            vec![file.clone()]
        };
        for t in targets {
            let checked = match release {
                Some(r) => check::check_file_for(&t, r),
                None => check::check_file(&t),
            };
            match checked {
                Ok(violations) if violations.is_empty() => {
                    println!("{}: ok", t.display());
                }
                Ok(violations) => {
                    for v in violations {
                        println!("{}: {}: {}: {}", t.display(), v.rule, v.location, v.message);
                    }
                    if code == EXIT_OK {
                        code = EXIT_FINDING;
                    }
                }
                Err(e) => {
                    eprintln!("{}: error: {e}", t.display());
                    code = EXIT_USAGE;
                }
            }
        }
    }
    code
}

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
                for (name, content) in crate::jit::flatbuffer_extra_files(&data)? {
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

fn cmd_extra(file: &Path, name: Option<&str>, out_dir: Option<&Path>) -> i32 {
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
        if check::is_unsafe_name(n) {
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
            crate::atomic_file::write(
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

fn cmd_conform(options: &crate::conform::Options) -> i32 {
    let started = std::time::Instant::now();
    match crate::conform::run(options) {
        Ok(summary) => {
            print!("{}", summary.table());
            for f in &summary.findings {
                println!("PyTorch finding: {}: {}: {}", f.case, f.kind, f.detail);
            }
            for f in &summary.failures {
                println!("DISAGREEMENT: {}: {}: {}", f.case, f.kind, f.detail);
            }
            println!(
                "{} disagreements, {} PyTorch findings, {:.1} s",
                summary.failures.len(),
                summary.findings.len(),
                started.elapsed().as_secs_f64()
            );
            if summary.ok() { EXIT_OK } else { EXIT_FINDING }
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}

fn cmd_gen(
    seed: u64,
    count: u64,
    out: &Path,
    format: GenFormat,
    config: Option<&Path>,
    release: Option<Release>,
) -> i32 {
    let config: crate::generator::Config = match config {
        None => Default::default(),
        Some(p) => match std::fs::read(p)
            .map_err(|e| e.to_string())
            .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: error: {e}", p.display());
                return EXIT_USAGE;
            }
        },
    };
    let outputs = &formats(format);
    let mut config = config.bounded();
    if let Some(release) = release {
        config.release = release;
    }
    match crate::generator::write_cases(seed, count, out, outputs, &config) {
        Ok(paths) => {
            println!(
                "wrote {} archives (and their facts) to {}",
                paths.len(),
                out.display()
            );
            EXIT_OK
        }
        Err(e @ Error::Io { .. }) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
        Err(e) => {
            eprintln!("error: generated case failed to save: {e}");
            EXIT_FINDING
        }
    }
}

fn cmd_convert(
    input: &Path,
    output: &Path,
    format: Option<crate::convert::Target>,
    pytorch_names: bool,
    release: Option<Release>,
) -> i32 {
    use crate::convert::{Format, Target, convert_file};
    use crate::flatbuffer::NameMode;
    let format = match format.or_else(|| Format::from_extension(output).map(Target::from)) {
        Some(f) => f,
        None => match std::fs::read(input) {
            Ok(d) => match Format::of(&d) {
                Format::Zip => Target::Flatbuffer,
                Format::Flatbuffer => Target::Zip,
            },
            Err(e) => return report_error(input, &Error::io(input.display().to_string(), e)),
        },
    };
    let names = if pytorch_names {
        NameMode::PyTorch
    } else {
        NameMode::Unique
    };
    let options = crate::convert::Options { names, release };
    match convert_file(input, output, format, options) {
        Ok(()) => EXIT_OK,
        Err(e @ Error::Io { .. }) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
        Err(e) => report_error(input, &e),
    }
}

fn cmd_roundtrip(file: &Path, out: Option<&Path>, release: Option<Release>) -> i32 {
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) => return report_error(file, &Error::io(file.display().to_string(), e)),
    };
    let rt = match crate::roundtrip::roundtrip_as(bytes::Bytes::from(data), release) {
        Ok(rt) => rt,
        Err(e) => return report_error(file, &e),
    };
    if let Some(out) = out {
        let write = crate::atomic_file::write(out, &rt.rewritten);
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

fn cmd_dump(file: &Path) -> i32 {
    let data = match map_file(file) {
        Ok(d) => d,
        Err(e) => return report_error(file, &e),
    };
    match crate::dump::dump_report(&data) {
        Ok(d) => {
            if std::io::stdout().write_all(d.text.as_bytes()).is_err() {
                return EXIT_USAGE;
            }
            let mut code = EXIT_OK;
            for p in &d.problems {
                code = report_error(file, &Error::Format(p.clone()));
            }
            code
        }
        Err(e) => report_error(file, &e),
    }
}

fn cmd_diff(a: &Path, b: &Path, json: bool) -> i32 {
    let (da, db) = match (map_file(a), map_file(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) => return report_error(a, &e),
        (_, Err(e)) => return report_error(b, &e),
    };
    let report = match crate::diff::diff(&da, &db) {
        Ok(r) => r,
        // Name the file that failed to load.
        Err(e) => {
            let culprit = if crate::diff::load_check(&da).is_err() {
                a
            } else {
                b
            };
            return report_error(culprit, &e);
        }
    };
    let text = if json {
        serde_json::to_string_pretty(&report.to_json()).unwrap_or_default() + "\n"
    } else {
        report.to_text()
    };
    if std::io::stdout().write_all(text.as_bytes()).is_err() {
        return EXIT_USAGE;
    }
    if report.is_equal() {
        EXIT_OK
    } else {
        EXIT_FINDING
    }
}

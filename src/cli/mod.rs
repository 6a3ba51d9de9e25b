//! The `ptconform` command line.

mod check;
mod conform;
mod convert;
mod diff;
mod dump;
mod extra;
mod generate;
mod info;
mod inspect;
mod roundtrip;

#[allow(unused_imports)]
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use bytes::Bytes;

use ptconform_core::error::Error;
use ptconform_core::jit::{FileFormat, file_format, map_file};
use ptconform_core::model::Device;
use ptconform_core::release::Release;
use ptconform_core::zip_archive::ZipArchiveReader;

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
    /// Largest record held whole in memory: a deflated record's inflated size, or a
    /// `code/` file's size (default 268435456, 256 MiB). Larger ones are `record-budget`
    /// findings; stored tensor data and extra files are never limited.
    #[arg(long, global = true, value_name = "BYTES")]
    pub max_record_bytes: Option<u64>,
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
        as_pytorch: Option<ptconform_core::release::Release>,
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
        format: Option<ConvertTo>,
        /// Reproduce PyTorch's flatbuffer writer, which merges classes that share a
        /// qualified name (the default gives them unique names, as the zip writer does).
        #[arg(long)]
        pytorch_names: bool,
        /// Write what this PyTorch release (2.0 to 2.15) writes (default: 2.15; a zip
        /// converted to a zip keeps its own release's layout).
        #[arg(long, value_name = "VERSION")]
        as_pytorch: Option<ptconform_core::release::Release>,
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
        /// `oracle/makers/make_models.py` writes to `~/.cache/ptconform/models`): facts, check,
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
        as_pytorch: Option<ptconform_core::release::Release>,
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

fn read_config(config: Option<&Path>) -> Result<ptconform_gen::generator::Config, i32> {
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

fn formats(format: GenFormat) -> Vec<ptconform_gen::generator::Output> {
    use ptconform_core::convert::Format;
    use ptconform_gen::generator::Output;
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

/// `convert --format`: the command-line names of [`ptconform_core::convert::Target`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConvertTo {
    Zip,
    MobileZip,
    Flatbuffer,
}

impl From<ConvertTo> for ptconform_core::convert::Target {
    fn from(to: ConvertTo) -> Self {
        use ptconform_core::convert::Target;
        match to {
            ConvertTo::Zip => Target::Zip,
            ConvertTo::MobileZip => Target::MobileZip,
            ConvertTo::Flatbuffer => Target::Flatbuffer,
        }
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
    if let Some(bytes) = cli.max_record_bytes {
        ptconform_core::zip_archive::set_max_record_bytes(bytes);
    }
    match cli.command {
        Command::Inspect {
            file,
            json,
            map_location,
        } => inspect::run(&file, json, map_location.as_deref()),
        Command::Info { file } => info::run(&file),
        Command::Check { files, for_pytorch } => check::run(&files, for_pytorch),
        Command::Extra {
            file,
            name,
            out_dir,
        } => extra::run(&file, name.as_deref(), out_dir.as_deref()),
        Command::Roundtrip {
            file,
            out,
            as_pytorch,
        } => roundtrip::run(&file, out.as_deref(), as_pytorch),
        Command::Dump { file } => dump::run(&file),
        Command::Diff { a, b, json } => diff::run(&a, &b, json),
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
            conform::run(&options)
        }
        Command::Gen {
            seed,
            count,
            out,
            format,
            config,
            as_pytorch,
        } => generate::run(seed, count, &out, format, config.as_deref(), as_pytorch),
        Command::Convert {
            input,
            output,
            format,
            pytorch_names,
            as_pytorch,
        } => convert::run(&input, &output, format, pytorch_names, as_pytorch),
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
                ptconform_core::display::escaped(&f.location.to_string()),
                f.message
            );
            EXIT_FINDING
        }
    }
}

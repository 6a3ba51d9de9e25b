//! `ptconform conform`: the differential campaign. Every corpus archive checks, inspects
//! as PyTorch reported, and round-trips; every generated case round-trips in ptconform
//! and, with `--torch`, loads in real PyTorch with the predicted facts, and PyTorch's own
//! re-saves (both formats) load in ptconform as the same model and re-save identically.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use bytes::Bytes;
use serde_json::{Value, json};

use ptconform_core::convert::Format;
use ptconform_core::error::{Error, Result};
use ptconform_gen::generator::compare::same_model;
use ptconform_gen::generator::{Case, Config, Output, generate, seed_bytes, write_output};

pub struct Options {
    pub cases: u64,
    pub seed: u64,
    /// What each case is written as: zip, flatbuffer, and/or mobile zip.
    pub formats: Vec<Output>,
    /// PyTorch's python (the venv's `bin/python`); `None`: ptconform only.
    pub torch: Option<PathBuf>,
    /// This run does the cases `i` with `i % shard.1 == shard.0`.
    pub shard: (u64, u64),
    /// Where failing cases are written (a directory per case).
    pub out: Option<PathBuf>,
    /// The PyTorch-made corpus to check first (`corpus/`), if present.
    pub corpus: Option<PathBuf>,
    pub config: Config,
    pub progress: bool,
    /// Structure-aware mutants per corpus archive (`--mutate N`; 0 = off): each is
    /// checked by ptconform and, with `--torch`, loaded by PyTorch; every mutant on which
    /// PyTorch crashes, hangs or runs out of memory is a finding (kept in `out`).
    pub mutate: u64,
    /// A real-model corpus (`corpus/models`, or `~/.cache/ptconform/models` from
    /// `oracle/makers/make_models.py`) to run as a campaign part: see [`models`].
    pub models: Option<PathBuf>,
}

/// One disagreement.
#[derive(Debug)]
pub struct Failure {
    pub case: String,
    pub kind: String,
    pub detail: String,
}

#[derive(Default, Debug)]
pub struct Row {
    pub checked: u64,
    pub agreed: u64,
    pub failed: u64,
    /// PyTorch crashed, hung or ran out of memory on an input ptconform accepted.
    pub pytorch_findings: u64,
}

#[derive(Default, Debug)]
pub struct Summary {
    pub rows: BTreeMap<String, Row>,
    pub failures: Vec<Failure>,
    pub findings: Vec<Failure>,
}

impl Summary {
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<22} {:>8} {:>8} {:>8} {:>10}\n",
            "part", "checked", "agree", "differ", "pytorch!"
        );
        for (name, r) in &self.rows {
            s += &format!(
                "{name:<22} {:>8} {:>8} {:>8} {:>10}\n",
                r.checked, r.agreed, r.failed, r.pytorch_findings
            );
        }
        s
    }

    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The PyTorch worker (`oracle/peer/worker.py`), started once and fed requests.
struct Worker {
    python: PathBuf,
    script: PathBuf,
    child: Option<(Child, ChildStdin, BufReader<ChildStdout>)>,
}

impl Worker {
    fn new(python: PathBuf, script: PathBuf) -> Self {
        Worker {
            python,
            script,
            child: None,
        }
    }

    fn request(&mut self, req: &Value) -> Result<Value> {
        let io = |e| Error::io("oracle/peer/worker.py", e);
        if self.child.is_none() {
            let mut child = Command::new(&self.python)
                .arg(&self.script)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(io)?;
            let stdin = child.stdin.take().expect("piped");
            let stdout = BufReader::new(child.stdout.take().expect("piped"));
            self.child = Some((child, stdin, stdout));
        }
        let (_, stdin, stdout) = self.child.as_mut().expect("started");
        writeln!(stdin, "{req}")
            .and_then(|_| stdin.flush())
            .map_err(io)?;
        let mut line = String::new();
        let n = stdout.read_line(&mut line).map_err(io)?;
        if n == 0 {
            // The worker itself died (it forks per request, so this is rare): restart.
            if let Some((mut c, _, _)) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            return Ok(json!({"ok": false, "crash": "the worker died"}));
        }
        serde_json::from_str(&line).map_err(|e| {
            Error::io(
                "oracle/peer/worker.py",
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some((mut c, stdin, _)) = self.child.take() {
            drop(stdin);
            let _ = c.wait();
        }
    }
}

const PYTORCH_KEYS: &[&str] = &[
    "format",
    "modules",
    "parameters",
    "buffers",
    "extra_files",
    "code_files",
    "version",
    "prefix",
    "module_info",
];
const PREDICTED_KEYS: &[&str] = &["modules", "parameters", "buffers", "extra_files"];

fn subset(v: &Value, keys: &[&str]) -> Value {
    Value::Object(
        keys.iter()
            .filter_map(|k| v.get(*k).map(|x| (k.to_string(), x.clone())))
            .collect(),
    )
}

pub fn run(opts: &Options) -> Result<Summary> {
    let mut summary = Summary::default();
    if let Some(dir) = &opts.corpus {
        corpus(dir, &mut summary)?;
    }
    let mut worker = opts.torch.clone().map(|python| {
        let script = opts
            .corpus
            .as_ref()
            .and_then(|c| c.parent())
            .map(|root| root.join("oracle/peer/worker.py"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("oracle/peer/worker.py"));
        Worker::new(python, script)
    });
    let indexes: Vec<u64> = (0..opts.cases)
        .filter(|i| i % opts.shard.1.max(1) == opts.shard.0)
        .collect();
    let bar = indicatif::ProgressBar::new((indexes.len() * opts.formats.len()) as u64);
    if !opts.progress {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} cases {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let scratch = tempfile::tempdir().map_err(|e| Error::io("temporary directory", e))?;
    for &i in &indexes {
        for &format in &opts.formats {
            let name = format!("gen-{}-{i}.{}", opts.seed, format.extension());
            let input = seed_bytes(opts.seed, i, 16 * 1024);
            let part = format!("generated {}", format.name());
            let problems = check_case(&input, format, opts, worker.as_mut(), scratch.path())?;
            let row = summary.rows.entry(part).or_default();
            row.checked += 1;
            let (findings, failures): (Vec<_>, Vec<_>) = problems
                .into_iter()
                .partition(|(k, _)| k.starts_with("pytorch-"));
            if !findings.is_empty() {
                row.pytorch_findings += 1;
            }
            if failures.is_empty() {
                row.agreed += 1;
            } else {
                row.failed += 1;
            }
            for (kind, detail) in findings {
                summary.findings.push(Failure {
                    case: name.clone(),
                    kind,
                    detail,
                });
            }
            if !failures.is_empty() {
                let kind = failures[0].0.clone();
                let shrunk = shrink(&input, format, opts, worker.as_mut(), scratch.path(), &kind)?;
                if let Some(out) = &opts.out {
                    write_failure(out, &name, &shrunk, format, &opts.config, &failures)?;
                }
                for (kind, detail) in failures {
                    summary.failures.push(Failure {
                        case: name.clone(),
                        kind,
                        detail,
                    });
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if opts.mutate > 0
        && let Some(dir) = &opts.corpus
    {
        mutants(dir, opts, worker.as_mut(), scratch.path(), &mut summary)?;
    }
    if let Some(dir) = &opts.models {
        models(dir, worker.as_mut(), scratch.path(), &mut summary)?;
    }
    Ok(summary)
}

/// The facts file `oracle/makers/make_models.py` writes beside a model file: `X.pt` → `X.json`,
/// `X.lite.ptl` (a mobile zip) → `X.lite.json`, a flatbuffer `X.ptl` → `X.ptl.json`.
pub fn model_facts_path(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let json = if let Some(stem) = name.strip_suffix(".lite.ptl") {
        format!("{stem}.lite.json")
    } else if let Some(stem) = name.strip_suffix(".pt") {
        format!("{stem}.json")
    } else {
        format!("{name}.json")
    };
    file.with_file_name(json)
}

/// The flatbuffer `oracle/makers/make_models.py` writes of the same module as zip `file`:
/// `X.pt` → `X.ptl` (also `X.frozen.pt` → `X.frozen.ptl`), `X.lite.ptl` →
/// `X.lite_fb.ptl`; `None` for a flatbuffer.
pub fn model_twin(file: &Path) -> Option<PathBuf> {
    let name = file.file_name()?.to_string_lossy().to_string();
    let twin = if let Some(stem) = name.strip_suffix(".lite.ptl") {
        format!("{stem}.lite_fb.ptl")
    } else {
        format!("{}.ptl", name.strip_suffix(".pt")?)
    };
    Some(file.with_file_name(twin))
}

/// `--models DIR`: every model file PyTorch loads (it has a facts file) checks clean,
/// inspects as PyTorch reported and re-saves byte for byte; every file PyTorch rejects
/// (no facts file) is flagged by `check`; each twin pair (`X.pt`/`X.ptl`,
/// `X.lite.ptl`/`X.lite_fb.ptl`, `X.frozen.pt`/`X.frozen.ptl`) compares equal; with
/// `--torch`, each flatbuffer converted to a zip is loaded by PyTorch with the
/// flatbuffer's modules, parameters and buffers.
fn models(
    dir: &Path,
    mut worker: Option<&mut Worker>,
    scratch: &Path,
    summary: &mut Summary,
) -> Result<()> {
    let files = archive_files(dir)?;
    let fail = |summary: &mut Summary, part: &str, case: &Path, kind: &str, detail: String| {
        summary.failures.push(Failure {
            case: format!("{part}: {}", case.display()),
            kind: kind.into(),
            detail,
        });
    };
    for path in &files {
        let data =
            Bytes::from(std::fs::read(path).map_err(|e| Error::io(path.display().to_string(), e))?);
        let format = Format::of(&data);
        let part = format!("models {}", format_name(format));
        let facts_path = model_facts_path(path);
        let violations = ptconform_core::check::check_bytes(&data);
        let mut problems: Vec<(String, String)> = Vec::new();
        match std::fs::read(&facts_path) {
            Err(_) => {
                // torch.jit.load rejects it (make_models.py writes no facts).
                if violations.is_empty() {
                    problems.push(("check-accepts".into(), "PyTorch rejects this file".into()));
                }
            }
            Ok(theirs) => {
                if let Some(v) = violations.first() {
                    problems.push(("check".into(), v.to_string()));
                }
                let theirs: Value = serde_json::from_slice(&theirs).unwrap_or(Value::Null);
                problems.extend(facts_and_roundtrip(&data, Some(&theirs)));
                if format == Format::Flatbuffer
                    && let Some(w) = worker.as_deref_mut()
                {
                    let row = summary
                        .rows
                        .entry("models converted to zip".into())
                        .or_default();
                    row.checked += 1;
                    let converted = ptconform_core::convert::convert(
                        data.clone(),
                        Format::Zip,
                        "archive",
                        ptconform_core::flatbuffer::NameMode::PyTorch,
                    );
                    let outcome = match converted {
                        Err(e) => Some(("convert", e.to_string())),
                        Ok(bytes) => {
                            let tmp = scratch.join("converted.pt");
                            std::fs::write(&tmp, &bytes)
                                .map_err(|e| Error::io(tmp.display().to_string(), e))?;
                            let res = w.request(&json!({
                                "path": tmp, "forward": null, "resave_dir": null,
                                "timeout": 120, "memory_mb": 8192,
                                "imports": ["torchvision", "torchaudio"],
                            }))?;
                            let keys = &["modules", "parameters", "buffers"];
                            if res["ok"] != true {
                                Some(("torch-load-converted", res.to_string()))
                            } else if subset(&res["facts"], keys) != subset(&theirs, keys) {
                                Some(("converted-facts", "PyTorch sees another module".into()))
                            } else {
                                None
                            }
                        }
                    };
                    match outcome {
                        None => row.agreed += 1,
                        Some((kind, detail)) => {
                            row.failed += 1;
                            fail(summary, "models converted to zip", path, kind, detail);
                        }
                    }
                }
            }
        }
        let row = summary.rows.entry(part.clone()).or_default();
        row.checked += 1;
        if problems.is_empty() {
            row.agreed += 1;
        } else {
            row.failed += 1;
        }
        for (kind, detail) in problems {
            fail(summary, &part, path, &kind, detail);
        }
    }
    for path in &files {
        let Some(twin) = model_twin(path) else {
            continue;
        };
        if !twin.exists() || !model_facts_path(path).exists() || !model_facts_path(&twin).exists() {
            continue;
        }
        let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(p.display().to_string(), e));
        let row = summary.rows.entry("models twin diff".into()).or_default();
        row.checked += 1;
        match crate::diff::diff(&read(path)?, &read(&twin)?) {
            Ok(r) if r.is_equal() => row.agreed += 1,
            Ok(r) => {
                row.failed += 1;
                fail(summary, "models twin diff", path, "twin-diff", r.to_text());
            }
            Err(e) => {
                row.failed += 1;
                fail(
                    summary,
                    "models twin diff",
                    path,
                    "twin-diff",
                    e.to_string(),
                );
            }
        }
    }
    Ok(())
}

/// `--mutate`: mutants of every corpus archive through ptconform and PyTorch.
fn mutants(
    dir: &Path,
    opts: &Options,
    mut worker: Option<&mut Worker>,
    scratch: &Path,
    summary: &mut Summary,
) -> Result<()> {
    let files = archive_files(dir)?;
    for (fi, path) in files.iter().enumerate() {
        let data = std::fs::read(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let format = Format::of(&data);
        for r in 0..opts.mutate {
            let choice = seed_bytes(opts.seed ^ 0x6d75_7461_7465, (fi as u64) << 32 | r, 64);
            let mut u = arbitrary::Unstructured::new(&choice);
            let Some(mutant) = ptconform_gen::mutate::mutate(&data, &mut u) else {
                continue;
            };
            let row = summary
                .rows
                .entry(format!("mutants {}", format_name(format)))
                .or_default();
            row.checked += 1;
            let verdict =
                match std::panic::catch_unwind(|| ptconform_core::check::check_bytes(&mutant)) {
                    Ok(v) if v.is_empty() => "accepted".to_string(),
                    Ok(v) => format!("rejected ({}: {})", v[0].rule, v[0].location),
                    Err(_) => {
                        row.failed += 1;
                        summary.failures.push(Failure {
                            case: format!("{} mutant {r}", path.display()),
                            kind: "panic".into(),
                            detail: "ptconform check panicked".into(),
                        });
                        continue;
                    }
                };
            row.agreed += 1;
            let Some(w) = worker.as_deref_mut() else {
                continue;
            };
            let ext = if format == Format::Zip { "pt" } else { "ptl" };
            let file = scratch.join(format!("mutant.{ext}"));
            std::fs::write(&file, &mutant).map_err(|e| Error::io(file.display().to_string(), e))?;
            let res = w.request(&json!({
                "path": file, "forward": null, "resave_dir": null, "timeout": 30, "memory_mb": 4096,
            }))?;
            let behaviour = if let Some(c) = res["crash"].as_str() {
                c.to_string()
            } else if res["hang"] == true {
                "hang (no answer in 30 s)".to_string()
            } else if res["memory"] == true {
                "out of memory (4 GiB limit)".to_string()
            } else {
                continue;
            };
            row.pytorch_findings += 1;
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("input");
            let name = format!("{stem}-mutant-{r}.{ext}");
            if let Some(out) = &opts.out {
                std::fs::create_dir_all(out)
                    .map_err(|e| Error::io(out.display().to_string(), e))?;
                std::fs::write(out.join(&name), &mutant)
                    .map_err(|e| Error::io(out.display().to_string(), e))?;
            }
            summary.findings.push(Failure {
                case: name,
                kind: "pytorch-mutant".into(),
                detail: format!("PyTorch: {behaviour}; ptconform: {verdict}"),
            });
        }
    }
    Ok(())
}

/// The `.pt` and `.ptl` files of `dir`, sorted.
fn archive_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir.display().to_string(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pt" || x == "ptl"))
        .collect();
    files.sort();
    Ok(files)
}

/// `inspect --json` against PyTorch's facts (when there are any) and a byte-identical
/// round trip: the checks every PyTorch-made file must pass.
fn facts_and_roundtrip(data: &Bytes, theirs: Option<&Value>) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    match ptconform_core::inspect::facts_of_bytes(data.clone(), None).map(|f| f.to_value()) {
        Ok(ours) => {
            if let Some(theirs) = theirs
                && subset(&ours, PYTORCH_KEYS) != subset(theirs, PYTORCH_KEYS)
            {
                problems.push(("facts".into(), "inspect differs from PyTorch's JSON".into()));
            }
        }
        Err(e) => problems.push(("load".into(), e.to_string())),
    }
    match ptconform_core::roundtrip::roundtrip(data.clone()) {
        Ok(rt) if rt.difference.is_none() => {}
        Ok(rt) => problems.push(("roundtrip".into(), format!("{:?}", rt.difference))),
        Err(e) => problems.push(("roundtrip".into(), e.to_string())),
    }
    problems
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Zip => "zip",
        Format::Flatbuffer => "flatbuffer",
    }
}

/// Every corpus archive: `check` clean, facts as PyTorch reported, identical round trip.
fn corpus(dir: &Path, summary: &mut Summary) -> Result<()> {
    let files = archive_files(dir)?;
    for path in files {
        let data = Bytes::from(
            std::fs::read(&path).map_err(|e| Error::io(path.display().to_string(), e))?,
        );
        let format = Format::of(&data);
        let row = summary
            .rows
            .entry(format!("corpus {}", format_name(format)))
            .or_default();
        row.checked += 1;
        let mut problems = Vec::new();
        let violations = ptconform_core::check::check_bytes(&data);
        if !violations.is_empty() {
            problems.push(("check".to_string(), format!("{}", violations[0])));
        }
        let json_path = match format {
            Format::Zip => path.with_extension("json"),
            Format::Flatbuffer => PathBuf::from(format!("{}.json", path.display())),
        };
        let theirs = std::fs::read(&json_path)
            .ok()
            .map(|t| serde_json::from_slice(&t).unwrap_or(Value::Null));
        problems.extend(facts_and_roundtrip(&data, theirs.as_ref()));
        if problems.is_empty() {
            row.agreed += 1;
        } else {
            row.failed += 1;
        }
        for (kind, detail) in problems {
            summary.failures.push(Failure {
                case: path.display().to_string(),
                kind,
                detail,
            });
        }
    }
    Ok(())
}

fn case_of(input: &[u8], output: Output, config: &Config) -> Case {
    let mut u = arbitrary::Unstructured::new(input);
    generate(&mut u, config, output.case_format()).expect("the generator is total")
}

/// The checks of one generated case; each problem is (kind, detail). Kinds starting
/// with `pytorch-` are PyTorch failing on an input ptconform accepted (findings).
fn check_case(
    input: &[u8],
    format: Output,
    opts: &Options,
    worker: Option<&mut Worker>,
    scratch: &Path,
) -> Result<Vec<(String, String)>> {
    let case = case_of(input, format, &opts.config);
    let mut problems = Vec::new();
    let bytes = match write_output(&case, format) {
        Ok(b) => b,
        Err(e) => return Ok(vec![("save".into(), e.to_string())]),
    };
    let expected = case.tree.expected_facts();
    let ours = match read_model(&bytes) {
        Ok(m) => m,
        Err(e) => return Ok(vec![("load".into(), e.to_string())]),
    };
    if let Err(d) = same_model(&case.tree.module, &ours) {
        problems.push(("model".into(), d));
    }
    match ptconform_core::inspect::facts_of_bytes(Bytes::from(bytes.clone()), None)
        .map(|f| f.to_value())
    {
        Ok(f) if subset(&f, PREDICTED_KEYS) == expected => {}
        Ok(f) => problems.push((
            "facts".into(),
            format!(
                "ptconform reports {} but the generator predicted {expected}",
                subset(&f, PREDICTED_KEYS)
            ),
        )),
        Err(e) => problems.push(("facts".into(), e.to_string())),
    }
    match ptconform_core::roundtrip::roundtrip(Bytes::from(bytes.clone())) {
        Ok(rt) if rt.difference.is_none() => {}
        Ok(rt) => problems.push(("roundtrip".into(), format!("{:?}", rt.difference))),
        Err(e) => problems.push(("roundtrip".into(), e.to_string())),
    }
    let Some(worker) = worker else {
        return Ok(problems);
    };
    let path = scratch.join(format!("case.{}", format.extension()));
    std::fs::write(&path, &bytes).map_err(|e| Error::io(path.display().to_string(), e))?;
    let resave = scratch.join("resave");
    let _ = std::fs::remove_dir_all(&resave);
    std::fs::create_dir_all(&resave).map_err(|e| Error::io(resave.display().to_string(), e))?;
    let forward = case
        .forward
        .as_ref()
        .map(|f| json!({"shape": f.input.shape, "values": f.input.data}));
    let res = worker.request(&json!({
        "path": path, "forward": forward, "resave_dir": resave, "timeout": 60, "memory_mb": 8192,
    }))?;
    if res["ok"] != true {
        let kind = if res.get("crash").is_some() {
            "pytorch-crash"
        } else if res.get("hang").is_some() {
            "pytorch-hang"
        } else if res.get("memory").is_some() {
            "pytorch-memory"
        } else {
            "pytorch-load"
        };
        // A PyTorch error on a file ptconform writes as PyTorch would is a disagreement;
        // a crash or hang is a finding about PyTorch.
        let kind = if kind == "pytorch-load" {
            "torch-load"
        } else {
            kind
        };
        problems.push((kind.into(), res.to_string()));
        return Ok(problems);
    }
    if subset(&res["facts"], PREDICTED_KEYS) != expected {
        problems.push((
            "torch-facts".into(),
            format!(
                "PyTorch reports {} but the generator predicted {expected}",
                subset(&res["facts"], PREDICTED_KEYS)
            ),
        ));
    }
    if let Some(f) = &case.forward {
        for loader in ["jit", "lite"] {
            let Some(got) = res["forward"][loader].as_array() else {
                continue;
            };
            let got: Vec<f32> = got
                .iter()
                .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32)
                .collect();
            if !f.matches(&got) {
                problems.push((
                    format!("torch-forward-{loader}"),
                    format!(
                        "PyTorch computed {got:?}, the evaluator predicted {:?}",
                        f.expected.data
                    ),
                ));
            }
        }
        if res["forward"]["jit"].is_null() {
            problems.push(("torch-forward-jit".into(), "no output".into()));
        }
        if format != Output::Format(Format::Zip) && res["forward"]["lite"].is_null() {
            problems.push(("torch-forward-lite".into(), "no output".into()));
        }
    }
    for key in ["zip", "flatbuffer", "mobile_zip"] {
        let Some(p) = res["resaved"][key].as_str() else {
            continue;
        };
        let theirs = match std::fs::read(p) {
            Ok(b) => b,
            Err(e) => {
                problems.push((format!("torch-resave-{key}"), e.to_string()));
                continue;
            }
        };
        match read_model(&theirs) {
            Ok(m) => {
                if let Err(d) = same_model(&ours, &m) {
                    problems.push((format!("torch-resave-{key}-model"), d));
                }
            }
            Err(e) => problems.push((format!("torch-resave-{key}-load"), e.to_string())),
        }
        match ptconform_core::roundtrip::roundtrip(Bytes::from(theirs)) {
            Ok(rt) if rt.difference.is_none() => {}
            Ok(rt) => problems.push((
                format!("torch-resave-{key}-roundtrip"),
                format!("{:?}", rt.difference),
            )),
            Err(e) => problems.push((format!("torch-resave-{key}-roundtrip"), e.to_string())),
        }
    }
    Ok(problems)
}

fn read_model(bytes: &[u8]) -> Result<ptconform_core::model::ScriptModule> {
    let data = Bytes::copy_from_slice(bytes);
    if Format::of(&data) == Format::Flatbuffer {
        return Ok(ptconform_core::flatbuffer::read_flatbuffer(&data, None)?.module);
    }
    ptconform_core::jit::load_from_buffer(data, None, None)
}

/// Shortens the generator input while the case still fails the same way (halving the
/// bytes, then dropping quarters), so the reproduction is a small module.
fn shrink(
    input: &[u8],
    format: Output,
    opts: &Options,
    mut worker: Option<&mut Worker>,
    scratch: &Path,
    kind: &str,
) -> Result<Vec<u8>> {
    let mut best = input.to_vec();
    let mut step = best.len() / 2;
    let mut tries = 0;
    while step > 0 && tries < 24 {
        tries += 1;
        let candidate = best[..best.len() - step].to_vec();
        let problems = check_case(&candidate, format, opts, worker.as_deref_mut(), scratch)?;
        if problems.iter().any(|(k, _)| k == kind) {
            best = candidate;
        } else {
            step /= 2;
        }
    }
    Ok(best)
}

fn write_failure(
    out: &Path,
    name: &str,
    input: &[u8],
    format: Output,
    config: &Config,
    failures: &[(String, String)],
) -> Result<()> {
    let dir = out.join(name);
    let io = |e| Error::io(dir.display().to_string(), e);
    std::fs::create_dir_all(&dir).map_err(io)?;
    std::fs::write(dir.join("generator-input.bin"), input).map_err(io)?;
    let case = case_of(input, format, config);
    if let Ok(bytes) = write_output(&case, format) {
        let file = dir.join(format!("case.{}", format.extension()));
        std::fs::write(&file, &bytes).map_err(io)?;
        if let Ok(f) = ptconform_core::inspect::facts_of_bytes(Bytes::from(bytes), None) {
            let text = serde_json::to_string_pretty(&f).unwrap_or_default();
            std::fs::write(dir.join("facts-ptconform.json"), text).map_err(io)?;
        }
    }
    let predicted = serde_json::to_string_pretty(&case.tree.expected_facts()).unwrap_or_default();
    std::fs::write(dir.join("facts-predicted.json"), predicted).map_err(io)?;
    let mut report = String::new();
    for (kind, detail) in failures {
        report += &format!("{kind}: {detail}\n");
    }
    std::fs::write(dir.join("failures.txt"), report).map_err(io)?;
    Ok(())
}

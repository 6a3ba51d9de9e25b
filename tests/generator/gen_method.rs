//! The method generator (`ptconform::generator::method`): random `forward` bodies for
//! small module trees, written as TorchScript source (every class) and as inlined mobile
//! bytecode (the root), checked against the Rust evaluator in ptconform and, with the
//! PyTorch venv, by running `forward` with `torch.jit.load` (zip and flatbuffer, which
//! compile the source) and with the lite interpreter (flatbuffer bytecode).

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arbitrary::Unstructured;
use bytes::Bytes;
use ptconform::flatbuffer::{MobileModule, WriteOptions, read_flatbuffer, write_flatbuffer};
use ptconform::generator::method::{
    Dense, Expr, Unit, Usable, evaluate, forward_bytecode, forward_source, function_definition,
    gen_forward, gen_functions,
};
use ptconform::generator::seed_bytes;
use ptconform::model::compose::ModuleBuilder;
use ptconform::model::device::Device;
use ptconform::model::dtype::ScalarType;
use ptconform::model::tensor::{Storage, Tensor};
use ptconform::model::{IValue, QualifiedName, ScriptModule};
use ptconform::zip_archive::ExtraFilesMap;
use ptconform::zip_archive::save::{SaveOptions, save_to_buffer};
use serde_json::json;

const SEEDS: u64 = 200;
const TORCH_SEEDS: u64 = 60;
const BATCH: usize = 2;
const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-5;

/// One generated tree: the module, its unit (bodies + functions), F, and the input.
struct Case {
    module: ScriptModule,
    unit: Unit,
    input: Dense,
}

struct TreeGen<'a, 'd> {
    u: &'a mut Unstructured<'d>,
    features: i64,
    storage: Arc<Storage>,
    unit: Unit,
}

impl TreeGen<'_, '_> {
    /// A float32 view of the shared storage: an offset and, for vectors, stride 1 or 2;
    /// for matrices contiguous, transposed, or with doubled row stride.
    fn view(&mut self, sizes: Vec<i64>) -> arbitrary::Result<Tensor> {
        let f = self.features;
        let strides = if sizes.len() == 1 {
            vec![self.u.int_in_range(1..=2)?]
        } else {
            match self.u.int_in_range(0..=2u8)? {
                0 => vec![f, 1],
                1 => vec![1, f],
                _ => vec![2 * f, 1],
            }
        };
        let span: i64 = sizes
            .iter()
            .zip(&strides)
            .map(|(s, st)| (s - 1) * st)
            .sum::<i64>()
            + 1;
        let offset = self.u.int_in_range(0..=self.storage.numel as i64 - span)?;
        Ok(Tensor {
            storage: self.storage.clone(),
            storage_offset: offset,
            sizes: sizes.into(),
            strides: strides.into(),
            requires_grad: self.u.arbitrary()?,
            conj: false,
            neg: false,
            quantization: None,
            sparse: None,
        })
    }

    /// Builds module `class` (children first, then its own body). The root has at least
    /// one `[F]` and one `[F, F]` parameter and 0–3 children; children may have one child.
    fn module(&mut self, class: &str, depth: usize) -> arbitrary::Result<ScriptModule> {
        let mut b = ModuleBuilder::new(class);
        let min = usize::from(depth == 0);
        let vectors: Vec<String> = (0..self.u.int_in_range(min..=2)?)
            .map(|i| format!("v{i}"))
            .collect();
        let matrices: Vec<String> = (0..self.u.int_in_range(min..=2)?)
            .map(|i| format!("w{i}"))
            .collect();
        for v in &vectors {
            let t = self.view(vec![self.features])?;
            b.parameter(v, IValue::Tensor(Arc::new(t)));
        }
        for w in &matrices {
            let t = self.view(vec![self.features, self.features])?;
            b.parameter(w, IValue::Tensor(Arc::new(t)));
        }
        let max_children = [3, 1, 0][depth.min(2)];
        let mut children = Vec::new();
        for i in 0..self.u.int_in_range(0..=max_children)? {
            let name = format!("c{i}");
            let child = self.module(&format!("{class}_{i}"), depth + 1)?;
            b.submodule(&name, &child);
            children.push(name);
        }
        let usable = Usable {
            vectors: vectors.iter().map(String::as_str).collect(),
            matrices: matrices.iter().map(String::as_str).collect(),
            children: children.iter().map(String::as_str).collect(),
            functions: self.unit.functions.iter().map(|f| &f.name).collect(),
        };
        let body = gen_forward(self.u, &usable, 8)?;
        let qn = QualifiedName::new(class);
        b.method_source(&forward_source(&qn, &body))
            .unwrap_or_else(|e| panic!("{class}: {e}\n{}", forward_source(&qn, &body)));
        if depth == 0 {
            for f in &self.unit.functions {
                b.define(function_definition(f).unwrap());
            }
        }
        self.unit.bodies.insert(qn, body);
        Ok(b.build())
    }
}

fn generate(seed: u64) -> Case {
    let data = seed_bytes(seed, 0, 2048);
    let mut u = Unstructured::new(&data);
    let features = u.int_in_range(1..=4i64).unwrap();
    // One storage for every parameter of the tree: exact small values k/8.
    let numel = 4 * features * features + 8;
    let bytes: Vec<u8> = (0..numel)
        .flat_map(|i| (((i * 5 + seed as i64) % 17 - 8) as f32 / 8.0).to_le_bytes())
        .collect();
    let storage = Arc::new(Storage {
        dtype: ScalarType::Float32,
        device: Device::cpu(),
        numel: numel as u64,
        data: Bytes::from(bytes),
    });
    let functions = gen_functions(&mut u, "__torch__", 3, 5).unwrap();
    let mut g = TreeGen {
        u: &mut u,
        features,
        storage,
        unit: Unit {
            functions,
            bodies: HashMap::new(),
        },
    };
    let module = g.module(&format!("__torch__.Gen{seed}"), 0).unwrap();
    let unit = g.unit;
    let f = features as usize;
    let input = Dense::new(
        vec![BATCH, f],
        (0..BATCH * f)
            .map(|i| ((i * 7 + 3) % 11) as f32 / 4.0 - 1.25)
            .collect(),
    )
    .unwrap();
    Case {
        module,
        unit,
        input,
    }
}

fn mobile(case: &Case) -> MobileModule {
    let bc = forward_bytecode(&case.module.root, &case.unit).unwrap();
    MobileModule::new(case.module.clone(), vec![Arc::new(bc)])
}

#[test]
fn generated_methods_write_read_and_evaluate() {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut children, mut functions) = (0, 0);
    for seed in 0..SEEDS {
        let case = generate(seed);
        for body in case.unit.bodies.values() {
            body.count_kinds(&mut counts);
        }
        for f in &case.unit.functions {
            f.body.count_kinds(&mut counts);
        }
        children += case.unit.bodies.len() - 1;
        functions += case.unit.functions.len();
        let want = evaluate(&case.module.root, &case.unit, &case.input)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(want.shape, case.input.shape, "seed {seed}");
        // Flatbuffer: written, read back, same bytecode, same prediction from the
        // read-back object graph (views and shared storage survive).
        let m = mobile(&case);
        let bytes = Bytes::from(write_flatbuffer(&m, &WriteOptions::default()).unwrap());
        let back = read_flatbuffer(&bytes, None).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(back.methods.len(), 1);
        assert_eq!(back.methods[0].instructions, m.methods[0].instructions);
        assert_eq!(back.methods[0].operators, m.methods[0].operators);
        assert_eq!(back.module.root.class, case.module.root.class);
        let got = evaluate(&back.module.root, &case.unit, &case.input).unwrap();
        assert_eq!(got, want, "seed {seed}: flatbuffer read-back");
        // Every class's source is among the jit_sources.
        let sources: String = back.jit_sources.iter().map(|(_, s)| s.as_str()).collect();
        for class in case.unit.bodies.keys() {
            assert!(
                sources.contains(&format!("def forward(self: {},", class.as_str())),
                "seed {seed}: {class:?} missing from jit_sources"
            );
        }
        // Zip: saved, loaded, same prediction.
        let zip =
            save_to_buffer(&case.module, &ExtraFilesMap::new(), &SaveOptions::default()).unwrap();
        let loaded = ptconform::jit::load_from_buffer(zip, None, None).unwrap();
        let got = evaluate(&loaded.root, &case.unit, &case.input).unwrap();
        assert_eq!(got, want, "seed {seed}: zip read-back");
    }
    println!(
        "{SEEDS} trees, {children} child classes, {functions} free functions; node kinds: {counts:?}"
    );
    for kind in Expr::KINDS {
        assert!(
            counts.get(kind).copied().unwrap_or(0) > 0,
            "kind {kind} never generated: {counts:?}"
        );
    }
}

#[test]
fn exhausted_input_gives_the_smallest_body() {
    let usable = Usable {
        vectors: vec!["v"],
        matrices: vec!["w"],
        children: vec!["c"],
        functions: vec![],
    };
    for len in 0..3 {
        let data = vec![0u8; len];
        let mut u = Unstructured::new(&data);
        assert_eq!(gen_forward(&mut u, &usable, 16).unwrap(), Expr::Input);
    }
}

#[test]
fn generated_methods_run_in_pytorch() {
    // `GEN_METHOD_TORCH_SEEDS` runs a longer campaign.
    let seeds = std::env::var("GEN_METHOD_TORCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(TORCH_SEEDS);
    let dir = tempfile::tempdir().unwrap();
    let mut jobs = Vec::new();
    let mut informative = 0;
    for seed in 0..seeds {
        let case = generate(seed);
        let want = evaluate(&case.module.root, &case.unit, &case.input).unwrap();
        // Outputs that are not all equal say something about the arithmetic.
        if want.data.iter().any(|v| *v != want.data[0]) {
            informative += 1;
        }
        let ptl = dir.path().join(format!("gen{seed}.ptl"));
        std::fs::write(
            &ptl,
            write_flatbuffer(&mobile(&case), &WriteOptions::default()).unwrap(),
        )
        .unwrap();
        let pt = dir.path().join(format!("gen{seed}.pt"));
        let zip =
            save_to_buffer(&case.module, &ExtraFilesMap::new(), &SaveOptions::default()).unwrap();
        std::fs::write(&pt, &zip).unwrap();
        // The same bytecode as a mobile zip (`_save_for_lite_interpreter`'s layout).
        let mobile_zip = dir.path().join(format!("gen{seed}.mobile.pt"));
        std::fs::write(
            &mobile_zip,
            ptconform::convert::mobile_zip_of(&mobile(&case), "archive").unwrap(),
        )
        .unwrap();
        for (path, loader) in [
            (&ptl, "jit"),
            (&ptl, "lite"),
            (&pt, "jit"),
            (&mobile_zip, "jit"),
            (&mobile_zip, "lite"),
        ] {
            jobs.push(json!({
                "seed": seed, "path": path, "loader": loader,
                "shape": case.input.shape, "input": case.input.data,
                "expected": want.data, "rtol": RTOL, "atol": ATOL,
            }));
        }
    }
    assert!(
        informative * 4 >= seeds * 3,
        "only {informative} of {seeds} predicted outputs vary"
    );
    let Some(python) = common::torch_python() else {
        return;
    };
    let mut child = std::process::Command::new(python)
        .arg(common::repo().join("oracle/peer/gen_forward.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start oracle/peer/gen_forward.py");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(serde_json::to_string(&jobs).unwrap().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gen_forward.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), jobs.len());
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut max_diff = 0f64;
    for (job, r) in jobs.iter().zip(&results) {
        max_diff = max_diff.max(r["max_abs_diff"].as_f64().unwrap_or(0.0));
        let path = job["path"].as_str().unwrap();
        let ext = if path.ends_with(".ptl") {
            "ptl"
        } else if path.ends_with(".mobile.pt") {
            "mobile zip"
        } else {
            "pt"
        };
        let status = r["status"].as_str().unwrap_or("?");
        *tally
            .entry(format!(
                "{ext}/{}: {status}",
                job["loader"].as_str().unwrap()
            ))
            .or_default() += 1;
        if status != "ok" {
            failures.push(format!(
                "seed {} {ext} {}: {r}\n  expected {}",
                job["seed"], job["loader"], job["expected"]
            ));
        }
    }
    println!(
        "PyTorch forward results over {seeds} trees ({informative} with varying outputs): \
         {tally:?}; largest difference {max_diff:e}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n")
    );
}

//! Generators of random modules (wasm-smith style): one generator driven by
//! `arbitrary::Unstructured` and a [`Config`], serving fuzzing and property tests alike.
//!
//! * [`tree`]: module trees, attributes, tensors, colliding names, extra files;
//! * [`method`]: `forward` bodies as TorchScript source and mobile bytecode, with an
//!   evaluator that predicts their output;
//! * [`compare`]: model equality for the round-trip properties.

pub mod compare;
pub mod config;
pub mod method;
pub mod tree;

use std::path::Path;

use arbitrary::Unstructured;

pub use config::Config;

use ptconform_core::convert::Format;
use ptconform_core::error::{Error, Result};
use ptconform_core::flatbuffer::{MobileModule, WriteOptions, write_flatbuffer};
use ptconform_core::release::Release;
use ptconform_core::zip_archive::save::{SaveOptions, save_to_buffer};
use tree::{Tree, gen_tree};

/// One generated case: the module tree (with what it must look like to a loader) and
/// the mobile module to write as a flatbuffer.
pub struct Case {
    pub tree: Tree,
    /// The module with the root's `forward` as mobile bytecode (all calls inlined).
    pub mobile: MobileModule,
    /// A fixed input for `forward` and the output the evaluator predicts.
    pub forward: Option<ForwardCase>,
    /// The PyTorch release the case is made for (`Config::release`): it is written as
    /// that release writes it.
    pub release: Release,
}

/// `forward(input)` must return `expected` (float32, shapes `[batch, F]`).
#[derive(Clone, Debug)]
pub struct ForwardCase {
    pub input: method::Dense,
    pub expected: method::Dense,
}

impl ForwardCase {
    /// Whether `got` (flattened) matches the prediction: float32 math in another order
    /// (PyTorch's kernels) may differ in the last bits.
    pub fn matches(&self, got: &[f32]) -> bool {
        got.len() == self.expected.data.len()
            && got
                .iter()
                .zip(&self.expected.data)
                .all(|(g, e)| (g.is_nan() && e.is_nan()) || (g - e).abs() <= 1e-5 + 1e-5 * e.abs())
    }
}

/// Generates one case for `format` (a flatbuffer case leaves out what a flatbuffer
/// cannot hold).
pub fn generate(u: &mut Unstructured, config: &Config, format: Format) -> arbitrary::Result<Case> {
    let tree = gen_tree(u, config, format == Format::Flatbuffer)?;
    let root = &tree.module.root;
    // Bodies the back ends refuse (inlining past its limits) leave the module without
    // bytecode; `torch.jit.load` still compiles its code.
    let methods = match method::forward_bytecode(root, &tree.unit) {
        Ok(f) => vec![std::sync::Arc::new(f)],
        Err(_) => Vec::new(),
    };
    let bounded = config.bounded();
    let (batch, features) = (bounded.batch as usize, bounded.features as usize);
    let values = (0..batch * features)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0)
        .collect();
    let forward = method::Dense::new(vec![batch, features], values)
        .ok()
        .and_then(|input| {
            let expected = method::evaluate(root, &tree.unit, &input).ok()?;
            Some(ForwardCase { input, expected })
        })
        .filter(|_| !methods.is_empty());
    let mut mobile = MobileModule::new(tree.module.clone(), methods);
    mobile.extra_files = tree
        .extra_files
        .iter()
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect();
    Ok(Case {
        tree,
        mobile,
        forward,
        release: config.release,
    })
}

/// The generator's input bytes for case `index` of `seed` (splitmix64): the same seed
/// always gives the same cases.
pub fn seed_bytes(seed: u64, index: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend((z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Case `index` of `seed`.
pub fn case_from_seed(seed: u64, index: u64, config: &Config, format: Format) -> Case {
    let bytes = seed_bytes(seed, index, 16 * 1024);
    let mut u = Unstructured::new(&bytes);
    generate(&mut u, config, format).expect("the generator is total")
}

/// The archive bytes of a case in `format`.
pub fn write_case(case: &Case, format: Format) -> Result<Vec<u8>> {
    write_output(case, Output::Format(format))
}

/// What `ptconform gen` writes: one of the two formats, or a mobile zip (the
/// flatbuffer case's module and bytecode in `_save_for_lite_interpreter`'s zip layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Format(Format),
    MobileZip,
}

impl Output {
    /// The format the case is generated for: a mobile zip carries the flatbuffer case
    /// (its module restricted to what bytecode can hold, and its `forward` bytecode).
    pub fn case_format(self) -> Format {
        match self {
            Output::Format(f) => f,
            Output::MobileZip => Format::Flatbuffer,
        }
    }

    /// The file name extension of a written case.
    pub fn extension(self) -> &'static str {
        match self {
            Output::Format(Format::Zip) => "pt",
            Output::Format(Format::Flatbuffer) => "ptl",
            Output::MobileZip => "mobile.pt",
        }
    }

    /// The name used in reports (`conform`'s table rows).
    pub fn name(self) -> &'static str {
        match self {
            Output::Format(Format::Zip) => "zip",
            Output::Format(Format::Flatbuffer) => "flatbuffer",
            Output::MobileZip => "mobile zip",
        }
    }
}

/// The bytes of a case (generated for `output.case_format()`) as `output`, written as
/// the case's PyTorch release writes it.
pub fn write_output(case: &Case, output: Output) -> Result<Vec<u8>> {
    let profile = case.release.profile();
    match output {
        Output::Format(Format::Zip) => Ok(save_to_buffer(
            &case.tree.module,
            &case.tree.extra_files,
            &SaveOptions {
                profile,
                ..Default::default()
            },
        )?
        .to_vec()),
        // Every supported release writes the same flatbuffer.
        Output::Format(Format::Flatbuffer) => {
            write_flatbuffer(&case.mobile, &WriteOptions::default())
        }
        Output::MobileZip => {
            ptconform_core::convert::mobile_zip_as(&case.mobile, "archive", profile)
        }
    }
}

/// `ptconform gen`: writes `count` cases per output into `out`, each with the JSON that
/// `inspect --json` must print for it beside it (`NAME.json`) and, when the module has a
/// `forward`, its input and predicted output (`NAME.forward.json`). Returns the archives.
pub fn write_cases(
    seed: u64,
    count: u64,
    out: &Path,
    outputs: &[Output],
    config: &Config,
) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out.display().to_string(), e))?;
    let mut written = Vec::new();
    for i in 0..count {
        for &output in outputs {
            let case = case_from_seed(seed, i, config, output.case_format());
            let bytes = write_output(&case, output)?;
            let ext = output.extension();
            let path = out.join(format!("gen-{seed}-{i}.{ext}"));
            // The facts as ptconform's reader reports them for the written bytes; the
            // tests check them against the generator's own prediction and PyTorch.
            let facts =
                ptconform_core::inspect::facts_of_bytes(bytes::Bytes::from(bytes.clone()), None)?;
            ptconform_core::atomic_file::write_file(&path, &bytes)?;
            let json = serde_json::to_string_pretty(&facts).expect("facts serialize");
            let json_path = out.join(format!("gen-{seed}-{i}.{ext}.json"));
            ptconform_core::atomic_file::write_file(&json_path, format!("{json}\n").as_bytes())?;
            if let Some(f) = &case.forward {
                // What `forward` must return, for loaders that also run modules.
                let fwd = serde_json::json!({
                    "input": {"shape": f.input.shape, "values": f.input.data},
                    "expected": {"shape": f.expected.shape, "values": f.expected.data},
                    "tolerance": {"rtol": 1e-5, "atol": 1e-5},
                });
                let fwd_path = out.join(format!("gen-{seed}-{i}.{ext}.forward.json"));
                let text = serde_json::to_string_pretty(&fwd).expect("serializes");
                ptconform_core::atomic_file::write_file(&fwd_path, format!("{text}\n").as_bytes())?;
            }
            written.push(path);
        }
    }
    Ok(written)
}

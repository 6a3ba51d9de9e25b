//! What the generator may produce, and how much of it.

use arbitrary::{Arbitrary, Unstructured};
use serde::{Deserialize, Serialize};

/// Bounds and switches of the module generator. `Default` gives small, varied modules
/// that PyTorch 2.15 loads in both formats; `Arbitrary` picks a bounded random config
/// (so a fuzz input chooses its own config too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Deepest submodule nesting below the root.
    pub max_depth: u32,
    /// Most submodules per module.
    pub max_children: u32,
    /// Most non-module attributes (parameters, buffers, plain values) per module.
    pub max_attributes: u32,
    /// Most elements per generated tensor (views may see fewer).
    pub max_tensor_elements: u32,
    /// The feature size F: `forward` maps float32 `[batch, F]` to `[batch, F]`.
    pub features: u32,
    /// The batch size of the forward input.
    pub batch: u32,
    /// Tensors of every dtype `release` saves and loads (else float32 only).
    pub all_dtypes: bool,
    /// Meta tensors (zip only: a flatbuffer cannot hold them, PyTorch's writer fails too).
    pub meta_tensors: bool,
    /// Views and storages shared between tensors.
    pub views: bool,
    /// Distinct classes (and functions) that share a qualified name, as when modules of
    /// different compilation units are combined under one parent.
    pub collisions: bool,
    /// Module classes shaped like `Sequential`, `ModuleList` and `ModuleDict`.
    pub containers: bool,
    /// Enum attributes (zip only: PyTorch's flatbuffer loaders reject every enum).
    pub enums: bool,
    /// TorchBind attributes: `quantized.LinearPackedParamsBase` objects (a qint8 weight
    /// and an optional bias, as quantized `Linear` modules hold them).
    pub torchbind: bool,
    /// Most extra files.
    pub max_extra_files: u32,
    /// Largest extra file, in bytes.
    pub max_extra_file_size: u32,
    /// Most expression nodes in one `forward` body.
    pub max_body_nodes: u32,
    /// The PyTorch release whose files are generated (`"2.6"`): the dtypes it knows,
    /// and the records its writer puts in an archive.
    pub release: ptconform_core::release::Release,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_depth: 3,
            max_children: 3,
            max_attributes: 5,
            max_tensor_elements: 24,
            features: 3,
            batch: 2,
            all_dtypes: true,
            meta_tensors: true,
            views: true,
            collisions: true,
            containers: true,
            enums: true,
            torchbind: true,
            max_extra_files: 4,
            max_extra_file_size: 300,
            max_body_nodes: 8,
            release: ptconform_core::release::Release::LATEST,
        }
    }
}

impl Config {
    /// The config restricted to what a flatbuffer can hold and PyTorch can load back.
    pub fn for_flatbuffer(&self) -> Config {
        Config {
            meta_tensors: false,
            enums: false,
            ..self.clone()
        }
    }

    /// Clamps every bound to what the generator supports (a config read from a file may
    /// ask for anything).
    pub fn bounded(&self) -> Config {
        Config {
            max_depth: self.max_depth.min(8),
            max_children: self.max_children.min(8),
            max_attributes: self.max_attributes.min(16),
            max_tensor_elements: self.max_tensor_elements.clamp(1, 4096),
            features: self.features.clamp(1, 16),
            batch: self.batch.clamp(1, 8),
            max_extra_files: self.max_extra_files.min(64),
            max_extra_file_size: self.max_extra_file_size.min(1 << 20),
            max_body_nodes: self.max_body_nodes.clamp(1, 64),
            ..self.clone()
        }
    }
}

impl<'a> Arbitrary<'a> for Config {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Config::arbitrary_within(u, &Limits::WIDE)
    }
}

/// The largest bound each drawn [`Config`] field may take.
struct Limits {
    depth: u32,
    children: u32,
    attributes: u32,
    tensor_elements: u32,
    features: u32,
    batch: u32,
    extra_files: u32,
    extra_file_size: u32,
    body_nodes: u32,
}

impl Limits {
    /// What [`Config`]'s `Arbitrary` draws from (trees of up to 341 modules).
    const WIDE: Limits = Limits {
        depth: 4,
        children: 4,
        attributes: 8,
        tensor_elements: 64,
        features: 6,
        batch: 3,
        extra_files: 6,
        extra_file_size: 4096,
        body_nodes: 12,
    };

    /// What the round-trip fuzz targets draw from: at most 13 modules, every feature
    /// flag still drawn. Each bound keeps the byte width of its [`Limits::WIDE`] twin, so
    /// a seed makes the same choices under both, only smaller.
    const SMALL: Limits = Limits {
        depth: 2,
        children: 3,
        attributes: 6,
        tensor_elements: 32,
        features: 4,
        batch: 2,
        extra_files: 3,
        extra_file_size: 1024,
        body_nodes: 10,
    };
}

impl Config {
    /// A config drawn from `u` with small bounds (a tree of at most 13 modules): what
    /// the round-trip fuzz targets use, where executions per second buy coverage and a
    /// deep tree mostly repeats what a shallow one reaches.
    pub fn arbitrary_small(u: &mut Unstructured<'_>) -> arbitrary::Result<Self> {
        Config::arbitrary_within(u, &Limits::SMALL)
    }

    fn arbitrary_within(u: &mut Unstructured<'_>, l: &Limits) -> arbitrary::Result<Self> {
        Ok(Config {
            max_depth: u.int_in_range(0..=l.depth)?,
            max_children: u.int_in_range(0..=l.children)?,
            max_attributes: u.int_in_range(0..=l.attributes)?,
            max_tensor_elements: u.int_in_range(1..=l.tensor_elements)?,
            features: u.int_in_range(1..=l.features)?,
            batch: u.int_in_range(1..=l.batch)?,
            all_dtypes: u.arbitrary()?,
            meta_tensors: u.arbitrary()?,
            views: u.arbitrary()?,
            collisions: u.arbitrary()?,
            containers: u.arbitrary()?,
            enums: u.arbitrary()?,
            torchbind: u.arbitrary()?,
            max_extra_files: u.int_in_range(0..=l.extra_files)?,
            max_extra_file_size: u.int_in_range(0..=l.extra_file_size)?,
            max_body_nodes: u.int_in_range(1..=l.body_nodes)?,
            release: ptconform_core::release::Release::LATEST,
        })
    }
}

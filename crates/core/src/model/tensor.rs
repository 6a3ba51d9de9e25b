//! Tensors as views over shared storages.

use std::sync::Arc;

use bytes::Bytes;

use super::{Device, ScalarType};
use crate::error::{FormatError, rules};

/// The finding for a storage or view that does not hold together (a storage record
/// missing or short for its `numel`, a view outside its storage), the same rule whichever
/// format the tensor came from.
pub fn storage_error(
    record: impl Into<String>,
    offset: Option<u64>,
    message: impl Into<String>,
) -> FormatError {
    FormatError::new(rules::STORAGE, record, offset, message)
}

/// One storage: the unit that owns tensor bytes and that several tensors may view.
/// `data` borrows from the archive's memory map (or the caller's buffer) whenever the
/// record was stored uncompressed; it is empty for meta storages.
#[derive(Debug)]
pub struct Storage {
    /// The element type (from the pickled `<Name>Storage` class or flatbuffer
    /// `TensorMetadata.scalar_type`).
    pub dtype: ScalarType,
    /// Where the storage lives (the pickled location string, e.g. `cpu`).
    pub device: Device,
    /// Number of elements of the whole storage (the pickled `numel`).
    pub numel: u64,
    /// The storage bytes (`data/<key>` in a zip, `storage_data` in a flatbuffer).
    pub data: Bytes,
}

impl Storage {
    /// Size in bytes: `numel` times the element size (saturating).
    pub fn nbytes(&self) -> u64 {
        self.numel.saturating_mul(self.dtype.element_size())
    }
}

/// Quantizer schemes, numbered as PyTorch's `QScheme`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QScheme {
    /// `torch.per_tensor_affine`: one scale and zero point.
    PerTensorAffine = 0,
    /// `torch.per_channel_affine`: a scale and zero point per channel.
    PerChannelAffine = 1,
    /// `torch.per_tensor_symmetric`.
    PerTensorSymmetric = 2,
    /// `torch.per_channel_symmetric`.
    PerChannelSymmetric = 3,
    /// `torch.per_channel_affine_float_qparams`: per-channel, floating-point zero points.
    PerChannelAffineFloatQparams = 4,
}

impl QScheme {
    /// Every scheme, in number order.
    pub const ALL: [QScheme; 5] = [
        QScheme::PerTensorAffine,
        QScheme::PerChannelAffine,
        QScheme::PerTensorSymmetric,
        QScheme::PerChannelSymmetric,
        QScheme::PerChannelAffineFloatQparams,
    ];

    /// The name without `torch.` (`per_tensor_affine`).
    pub fn name(self) -> &'static str {
        match self {
            QScheme::PerTensorAffine => "per_tensor_affine",
            QScheme::PerChannelAffine => "per_channel_affine",
            QScheme::PerTensorSymmetric => "per_tensor_symmetric",
            QScheme::PerChannelSymmetric => "per_channel_symmetric",
            QScheme::PerChannelAffineFloatQparams => "per_channel_affine_float_qparams",
        }
    }

    /// The scheme with this name (as [`QScheme::name`] gives it), if any.
    pub fn from_name(s: &str) -> Option<Self> {
        QScheme::ALL.iter().copied().find(|q| q.name() == s)
    }

    /// Whether the scheme has a scale and zero point per channel.
    pub fn is_per_channel(self) -> bool {
        matches!(
            self,
            QScheme::PerChannelAffine
                | QScheme::PerChannelSymmetric
                | QScheme::PerChannelAffineFloatQparams
        )
    }
}

/// A quantized tensor's quantizer parameters (`_rebuild_qtensor`'s tuple, flatbuffer
/// `QuantizedSchema`).
#[derive(Clone, Debug)]
pub enum Quantization {
    /// `(qscheme, scale, zero_point)`: one scale and zero point for the tensor.
    PerTensor {
        /// A per-tensor scheme.
        scheme: QScheme,
        /// The scale (an int in the pickle is read as a float).
        scale: f64,
        /// The zero point.
        zero_point: i64,
    },
    /// `(qscheme, scales, zero_points, axis)`: parameters per channel along `axis`.
    PerChannel {
        /// A per-channel scheme.
        scheme: QScheme,
        /// One scale per channel (a 1-d tensor).
        scales: Arc<Tensor>,
        /// One zero point per channel (a 1-d tensor).
        zero_points: Arc<Tensor>,
        /// The channel dimension.
        axis: i64,
    },
}

/// Sizes or strides of a tensor: up to four dimensions are held inline (a load of
/// thousands of small tensors would otherwise allocate and free two vectors for each).
pub type Dims = smallvec::SmallVec<[i64; 4]>;

/// A strided view of a storage.
#[derive(Clone, Debug)]
pub struct Tensor {
    /// The storage viewed, shared with every other tensor of that storage.
    pub storage: Arc<Storage>,
    /// In elements.
    pub storage_offset: i64,
    /// The size of each dimension.
    pub sizes: Dims,
    /// In elements.
    pub strides: Dims,
    /// The `requires_grad` flag (`_rebuild_tensor_v2`'s argument, flatbuffer
    /// `TensorMetadata.requires_grad`).
    pub requires_grad: bool,
    /// The conjugate bit (a lazily conjugated view).
    pub conj: bool,
    /// The negative bit (a lazily negated view).
    pub neg: bool,
    /// The quantizer parameters, for a quantized tensor (`_rebuild_qtensor`).
    pub quantization: Option<Quantization>,
    /// Set for a sparse tensor: its layout and component tensors. The tensor itself then
    /// has the sparse sizes, no strides, offset 0, and its values' storage (so dtype and
    /// device are the values').
    pub sparse: Option<Arc<Sparse>>,
}

/// The sparse layouts `torch.jit.save` writes, numbered as PyTorch's `c10::Layout` (the
/// int in the pickle). CSC, BSR and BSC cannot be written ("Cannot access storage of
/// SparseCsrTensorImpl") and PyTorch's unpickler refuses their numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseLayout {
    /// `torch.sparse_coo`: components `[indices, values]`.
    Coo = 1,
    /// `torch.sparse_csr`: components `[crow_indices, col_indices, values]`.
    Csr = 2,
}

impl SparseLayout {
    /// The layout with this `c10::Layout` number, if it can be written.
    pub fn from_number(n: i64) -> Option<Self> {
        match n {
            1 => Some(SparseLayout::Coo),
            2 => Some(SparseLayout::Csr),
            _ => None,
        }
    }

    /// The name without `torch.` (`sparse_coo`).
    pub fn name(self) -> &'static str {
        match self {
            SparseLayout::Coo => "sparse_coo",
            SparseLayout::Csr => "sparse_csr",
        }
    }

    /// How many component tensors the layout has.
    pub fn components(self) -> usize {
        match self {
            SparseLayout::Coo => 2,
            SparseLayout::Csr => 3,
        }
    }
}

/// A sparse tensor's layout and dense component tensors, in pickle order.
#[derive(Clone, Debug)]
pub struct Sparse {
    /// The sparse layout (the pickled `c10::Layout` number).
    pub layout: SparseLayout,
    /// The component tensors, as many as [`SparseLayout::components`] says.
    pub components: Vec<Arc<Tensor>>,
}

impl Tensor {
    /// The element type (the storage's).
    pub fn dtype(&self) -> ScalarType {
        self.storage.dtype
    }

    /// The device (the storage's).
    pub fn device(&self) -> &Device {
        &self.storage.device
    }

    /// Number of elements: the product of `sizes` (negative sizes count as 0, saturating).
    pub fn numel(&self) -> u64 {
        self.sizes
            .iter()
            .fold(1u64, |acc, &s| acc.saturating_mul(s.max(0) as u64))
    }

    /// Contiguous strides for `sizes` (row-major).
    pub fn contiguous_strides(sizes: &[i64]) -> Dims {
        let mut strides: Dims = smallvec::smallvec![0; sizes.len()];
        let mut acc = 1i64;
        for i in (0..sizes.len()).rev() {
            strides[i] = acc;
            acc = acc.saturating_mul(sizes[i].max(1));
        }
        strides
    }

    /// The element range `[lo, hi)` of the storage this view can touch, or `None` for an
    /// empty view. Errors (as `Err(())`) on negative sizes or arithmetic overflow.
    #[allow(clippy::result_unit_err)]
    pub fn storage_extent(&self) -> Result<Option<(i128, i128)>, ()> {
        if self.sizes.len() != self.strides.len() || self.storage_offset < 0 {
            return Err(());
        }
        let mut lo = self.storage_offset as i128;
        let mut hi = self.storage_offset as i128;
        for (&size, &stride) in self.sizes.iter().zip(&self.strides) {
            if size < 0 {
                return Err(());
            }
            if size == 0 {
                return Ok(None);
            }
            let span = (size as i128 - 1) * stride as i128;
            if span < 0 {
                lo += span;
            } else {
                hi += span;
            }
        }
        Ok(Some((lo, hi + 1)))
    }
}

impl Tensor {
    /// A contiguous tensor over a new storage holding exactly `data`.
    pub fn contiguous(
        dtype: ScalarType,
        device: Device,
        sizes: impl Into<Dims>,
        data: Bytes,
        requires_grad: bool,
    ) -> Tensor {
        let sizes = sizes.into();
        let numel = if device.is_meta() {
            sizes.iter().product::<i64>().max(0) as u64
        } else {
            data.len() as u64 / dtype.element_size()
        };
        Tensor {
            storage: Arc::new(Storage {
                dtype,
                device,
                numel,
                data,
            }),
            storage_offset: 0,
            strides: Tensor::contiguous_strides(&sizes),
            sizes,
            requires_grad,
            conj: false,
            neg: false,
            quantization: None,
            sparse: None,
        }
    }
}

/// The one check that a view lies inside its storage, for every reader (pickle,
/// flatbuffer) of every format.
impl Tensor {
    /// A view must stay inside its storage (PyTorch refuses out-of-bounds views on load).
    pub fn check_view(&self) -> Result<(), String> {
        let t = self;
        if t.sizes.len() != t.strides.len() {
            return Err(format!(
                "tensor has {} sizes but {} strides",
                t.sizes.len(),
                t.strides.len()
            ));
        }
        if let Some(k) = t.sizes.iter().position(|&s| s < 0) {
            return Err(format!("negative size {} in dimension {k}", t.sizes[k]));
        }
        if let Some(k) = t.strides.iter().position(|&s| s < 0) {
            return Err(format!(
                "negative stride {} in dimension {k} (no PyTorch writer makes one; ptconform's model refuses it)",
                t.strides[k]
            ));
        }
        if t.storage_offset < 0 {
            return Err(format!("negative storage offset {}", t.storage_offset));
        }
        if t.sizes.contains(&0) {
            // An empty view touches no element.
            return Ok(());
        }
        let capacity = t.storage.numel as i128 * t.storage.dtype.values_per_element() as i128;
        // Each dimension's span fits an i128 ((2^63)^2 = 2^126); refusing any span larger
        // than the storage keeps their sum (one per dimension) from overflowing it.
        if let Some(k) =
            (0..t.sizes.len()).find(|&k| (t.sizes[k] as i128 - 1) * t.strides[k] as i128 > capacity)
        {
            return Err(format!(
                "view (offset {}, sizes {:?}, strides {:?}) reaches outside its storage of {} elements (dimension {k} alone needs more)",
                t.storage_offset, t.sizes, t.strides, t.storage.numel
            ));
        }
        let extent = t.storage_extent().map_err(|_| {
            format!(
                "invalid view: offset {}, sizes {:?}, strides {:?}",
                t.storage_offset, t.sizes, t.strides
            )
        })?;
        if let Some((lo, hi)) = extent
            && (lo < 0 || hi > capacity)
        {
            return Err(format!(
                "view (offset {}, sizes {:?}, strides {:?}) reaches outside its storage of {} elements (it needs {hi} elements)",
                t.storage_offset, t.sizes, t.strides, t.storage.numel
            ));
        }
        Ok(())
    }
}

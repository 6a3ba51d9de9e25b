//! TorchBind classes: C++ classes registered with PyTorch's class registry and named
//! `__torch__.torch.classes.NAMESPACE.NAME` in TorchScript.
//!
//! Their definitions live in C++, never in `code/` (PyTorch still writes an empty
//! `code/__torch__/torch/classes/NAMESPACE.py` with its `.debug_pkl` for each namespace
//! it uses). An object of such a class is serialized through the class's `__getstate__`:
//! in a pickle as `GLOBAL` + `EMPTY_TUPLE` + `NEWOBJ` + state + `BUILD`, in a flatbuffer
//! as an `Object` whose `ObjectType` is `CUSTOM_CLASS` and whose `state` is the value.
//! Loading runs the C++ `__setstate__` on that state, so ptconform keeps the state as
//! [`ObjectState::SetState`](super::ObjectState::SetState) and never needs the class's
//! definition.
//!
//! [`KNOWN`] lists the classes PyTorch 2.15 itself registers that can be serialized,
//! with the TorchScript type of the state their `__getstate__` returns (the layouts are
//! facts of PyTorch's `def_pickle` registrations; `check` does not refuse other state
//! shapes, since PyTorch's `__setstate__` decides that at load time). Any other
//! `__torch__.torch.classes.NS.NAME` is read the same way, with a note that PyTorch only
//! loads it once the extension library registering it is loaded.

use super::QualifiedName;

/// The qualified-name prefix of every TorchBind class.
pub const PREFIX: &str = "__torch__.torch.classes.";

/// A TorchBind class PyTorch registers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownClass {
    /// `NAMESPACE.NAME` after [`PREFIX`].
    pub name: &'static str,
    /// The TorchScript type of the value `__getstate__` returns (and `__setstate__` takes).
    pub state: &'static str,
    /// What uses it, for `inspect` and `dump`.
    pub used_by: &'static str,
}

/// The serializable TorchBind classes registered by the PyTorch 2.15 wheel (the classes
/// with `__getstate__` in `torch._C._jit_get_custom_class_schemas()`), with their state
/// types as those schemas print them in TorchScript syntax. Builds with XNNPACK also
/// register `xnnpack.LinearOpContext`, `xnnpack.Conv2dOpContext` and
/// `xnnpack.TransposeConv2dOpContext` (written by `optimize_for_mobile`); the 2.15 CPU
/// wheel has none, so files holding them read as unregistered classes.
pub const KNOWN: &[KnownClass] = &[
    KnownClass {
        name: "quantized.LinearPackedParamsBase",
        state: "Tuple[Tensor, Optional[Tensor]]",
        used_by: "quantized and dynamically quantized nn.Linear",
    },
    KnownClass {
        name: "quantized.Conv2dPackedParamsBase",
        state: "Tuple[str, List[Tensor], List[Optional[Tensor]]]",
        used_by: "quantized nn.Conv1d / Conv2d / ConvTranspose2d",
    },
    KnownClass {
        name: "quantized.Conv3dPackedParamsBase",
        state: "Tuple[str, List[Tensor], List[Optional[Tensor]]]",
        used_by: "quantized nn.Conv3d / ConvTranspose3d",
    },
    KnownClass {
        name: "quantized.EmbeddingPackedParamsBase",
        state: "Tuple[int, List[Tensor], List[float], List[int]]",
        used_by: "quantized nn.Embedding / EmbeddingBag",
    },
    KnownClass {
        name: "rnn.CellParamsBase",
        state: "Tuple[str, List[Tensor], List[float], List[int], List[__torch__.torch.classes.quantized.LinearPackedParamsBase]]",
        used_by: "dynamically quantized nn.LSTM / GRU cells",
    },
    KnownClass {
        name: "sparse.LinearPackedParamsBase",
        state: "Tuple[int, Optional[Tensor], int, int, Tensor, Tensor, bool, Tensor, Tensor, Tensor, int, int]",
        used_by: "torch.ao sparse quantized Linear",
    },
    KnownClass {
        name: "mkldnn.ConvOpContext",
        state: "Tuple[Tensor, Optional[Tensor], List[int], List[int], List[int], int, List[int], str]",
        used_by: "oneDNN prepacked convolution (frozen models on mkldnn)",
    },
    KnownClass {
        name: "aten.OpaqueObject",
        state: "str",
        used_by: "opaque objects of torch.library custom ops",
    },
];

/// Whether `name` names a TorchBind class (`__torch__.torch.classes.NS.NAME`).
pub fn is_torchbind(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.split('.').count() == 2 && rest.split('.').all(|a| !a.is_empty()))
}

/// Whether `name` is a TorchBind class name (see [`is_torchbind`]).
pub fn is_torchbind_name(name: &QualifiedName) -> bool {
    is_torchbind(name.as_str())
}

/// The registration PyTorch 2.15 has for `name`, if it registers it itself.
pub fn known(name: &str) -> Option<&'static KnownClass> {
    let rest = name.strip_prefix(PREFIX)?;
    KNOWN.iter().find(|k| k.name == rest)
}

/// A one-line description for `inspect` and `dump`.
pub fn describe(name: &str) -> String {
    match known(name) {
        Some(k) => format!(
            "TorchBind class registered by PyTorch ({}); state {}",
            k.used_by, k.state
        ),
        None => "TorchBind class not registered by PyTorch itself: torch.jit.load needs the \
                 extension library that registers it (torch.ops.load_library); its state is \
                 read generically"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_torchbind(
            "__torch__.torch.classes.quantized.LinearPackedParamsBase"
        ));
        assert!(is_torchbind("__torch__.torch.classes.my_ns.Thing"));
        assert!(!is_torchbind("__torch__.torch.classes.quantized"));
        assert!(!is_torchbind("__torch__.torch.classes.a.b.C"));
        assert!(!is_torchbind("__torch__.torch.nn.Linear"));
        assert!(!is_torchbind("__torch__.torch.classes..X"));
        assert!(known("__torch__.torch.classes.rnn.CellParamsBase").is_some());
        assert!(known("__torch__.torch.classes.my_ns.Thing").is_none());
        assert!(describe("__torch__.torch.classes.my_ns.Thing").contains("not registered"));
    }
}

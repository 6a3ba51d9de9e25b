//! The generated flatbuffers code against a file PyTorch writes in the test: the
//! two-Linear `Foo` of `spec/flatbuffer.md` §7, every field as the spec's dump shows it.
//! (Was a unit test of `flatbuffer::generated`; it runs PyTorch, so it lives here.)

use std::path::Path;

use ptconform::flatbuffer::generated::mobile_bytecode as fb;
use ptconform::flatbuffer::support;

use crate::common;

const FOOMOD: &str = "\
import torch
from torch import nn

class Foo(nn.Module):
    def __init__(self):
        super().__init__()
        self.foo = nn.Linear(2, 2)
        self.bar = nn.Linear(2, 2)

    def forward(self, x):
        x = self.foo(x)
        return self.bar(x)
";

/// The two-Linear `Foo` of spec/flatbuffer.md §7, saved by PyTorch in a fresh process.
/// §7 shows `return self.bar(self.foo(x))`, but its dump (2592 bytes, 21 instructions,
/// 383-char source, `foo` read first) is of this two-statement `forward`; the one-line
/// form gives 2528 bytes and 19 instructions.
fn pytorch_foo(python: &Path, dir: &Path) -> Vec<u8> {
    std::fs::write(dir.join("foomod.py"), FOOMOD).unwrap();
    let out = dir.join("foo.ptl");
    let status = std::process::Command::new(python)
        .current_dir(dir)
        .env("PYTHONHASHSEED", "0")
        .env("PYTHONPATH", dir)
        .args([
            "-W",
            "ignore::FutureWarning",
            "-c",
            "import sys, torch, foomod\n\
             torch.jit.save_jit_module_to_flatbuffer(torch.jit.script(foomod.Foo()), sys.argv[1])",
        ])
        .arg(&out)
        .status()
        .expect("running python");
    assert!(status.success(), "python failed to save the flatbuffer");
    std::fs::read(out).unwrap()
}

#[test]
fn reads_pytorch_written_foo() {
    let Some(python) = common::torch_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let buf = pytorch_foo(&python, dir.path());

    assert_eq!(buf.len(), 2592, "spec §7: 2592 bytes");
    assert_eq!(
        &buf[0..8],
        b"\x30\0\0\0PTMF",
        "root at 0x30, identifier PTMF"
    );
    assert!(fb::module_buffer_has_identifier(&buf));
    let opts = flatbuffers::VerifierOptions::default();
    let m = fb::root_as_module_with_opts(&opts, &buf).expect("verifies");
    assert_eq!(
        m._tab.vtable().num_fields(),
        12,
        "all 12 Module slots incl. mobile_ivalue_size"
    );

    assert_eq!(m.bytecode_version(), 9);
    assert_eq!(m.operator_version(), 1);
    assert_eq!(m.mobile_ivalue_size(), 10);
    assert_eq!(m.state_obj(), 9);
    assert_eq!(m.methods().unwrap().iter().collect::<Vec<_>>(), [1]);
    assert_eq!(m.storage_data_size(), 4);
    assert!(
        m.extra_files().unwrap().is_empty(),
        "empty extra_files vector is present"
    );
    assert!(m.jit_constants().unwrap().is_empty());

    let ivalues = m.ivalues().unwrap();
    let tags: Vec<u8> = ivalues.iter().map(|iv| iv.val_type().0).collect();
    assert_eq!(tags, [0, 16, 2, 5, 5, 10, 5, 5, 10, 10]);
    for iv in ivalues.iter() {
        support::check_ivalue_union(&buf, &iv).unwrap();
    }
    assert_eq!(support::read_bool(&ivalues.get(2)), Some(true));

    let f = ivalues.get(1).val_as_function().unwrap();
    assert_eq!(f.qn(), Some("__torch__.foomod.Foo.forward"));
    let ins: Vec<(i8, u16, i32)> = f
        .instructions()
        .unwrap()
        .iter()
        .map(|i| (i.op(), i.n(), i.x()))
        .collect();
    assert_eq!(ins.len(), 21);
    assert_eq!(ins[0], (4, 2, 1), "STOREN");
    assert_eq!(ins[20], (12, 0, 0), "RET");
    let ops: Vec<_> = f
        .operators()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o.name().unwrap(),
                o.overload_name().unwrap(),
                o.num_args_serialized(),
            )
        })
        .collect();
    assert_eq!(ops, [("aten::linear", "", 3)]);
    assert!(f.constants().unwrap().is_empty() && f.type_annotations().unwrap().is_empty());
    assert_eq!(f.register_size(), 5);
    assert_eq!(f.class_type(), 0);
    let args: Vec<_> = f
        .schema()
        .unwrap()
        .arguments()
        .unwrap()
        .iter()
        .map(|a| (a.name().unwrap(), a.type_().unwrap(), a.default_value()))
        .collect();
    assert_eq!(
        args,
        [("self", "__torch__.foomod.Foo", 0), ("x", "Tensor", 0)]
    );
    let handles: Vec<i64> = f
        .debug_info()
        .unwrap()
        .debug_handle()
        .unwrap()
        .iter()
        .map(support::bytes8_i64)
        .collect();
    assert_eq!(handles, (0..21).collect::<Vec<_>>());

    let t = ivalues.get(3).val_as_tensor_metadata().unwrap();
    assert_eq!(
        (
            t.storage_location_index(),
            t.scalar_type(),
            t.storage_offset()
        ),
        (0, 6, 0)
    );
    assert_eq!(t.sizes().unwrap().iter().collect::<Vec<_>>(), [2, 2]);
    assert_eq!(t.strides().unwrap().iter().collect::<Vec<_>>(), [2, 1]);
    assert!(t.requires_grad() && t.quantized_schema().is_none());
    let root = ivalues.get(9).val_as_object().unwrap();
    assert_eq!(root.type_index(), 0);
    assert_eq!(
        root.attrs().unwrap().iter().collect::<Vec<_>>(),
        [2, 0, 5, 8]
    );
    let foo = ivalues.get(5).val_as_object().unwrap();
    assert_eq!(foo.type_index(), 1);
    assert_eq!(
        foo.attrs().unwrap().iter().collect::<Vec<_>>(),
        [3, 4, 2, 0]
    );

    let types: Vec<_> = m
        .object_types()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t.type_name().unwrap(),
                t.type_(),
                t.attr_names().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            ("__torch__.foomod.Foo", fb::TypeType::CLASS_WITH_FIELD, 4),
            (
                "__torch__.torch.nn.modules.linear.Linear",
                fb::TypeType::CLASS_WITH_FIELD,
                4
            ),
        ]
    );
    let sources: Vec<_> = m
        .jit_sources()
        .unwrap()
        .iter()
        .map(|s| (s.name().unwrap(), s.content().unwrap().len()))
        .collect();
    assert_eq!(
        sources,
        [
            ("__torch__.foomod", 383),
            ("__torch__.torch.nn.modules.linear", 415)
        ]
    );

    // Storage bytes: 32-aligned (not the schema's 16), built first = highest address.
    let storages: Vec<(usize, usize)> = m
        .storage_data()
        .unwrap()
        .iter()
        .map(|s| {
            let d = s.data().unwrap().bytes();
            (d.as_ptr() as usize - buf.as_ptr() as usize, d.len())
        })
        .collect();
    assert_eq!(storages, [(288, 16), (256, 8), (224, 16), (192, 8)]);
}

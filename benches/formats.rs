//! Load, save, inspect and check for both formats on the shapes of the performance issue:
//! (a) 64 × Linear(1024, 1024) float32 (~256 MiB), (b) a tree of 500 distinct small module
//! classes, (c) one module with 5,000 small buffers. The fixtures are built in Rust and
//! written once to a temporary directory; loads go through the memory-mapped file.
//! `oracle/bench/bench_compare.py` times PyTorch on the same files.
//!
//!     cargo bench --bench formats            (PTCONFORM_BENCH_KEEP=DIR keeps the files)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use ptconform::flatbuffer::{MobileModule, WriteOptions, read_flatbuffer, write_flatbuffer};
use ptconform::model::compose::ModuleBuilder;
use ptconform::model::{Device, IValue, ScalarType, ScriptModule, Tensor};
use ptconform::zip_archive::ExtraFilesMap;
use ptconform::zip_archive::save::{SaveOptions, save, save_to_buffer};

// As the `ptconform` binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn tensor(sizes: &[i64], seed: u8) -> IValue {
    let n: i64 = sizes.iter().product();
    let data: Vec<u8> = (0..n * 4)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    let mut t = Tensor::contiguous(
        ScalarType::Float32,
        Device::cpu(),
        sizes.to_vec(),
        Bytes::from(data),
        true,
    );
    t.strides = Tensor::contiguous_strides(sizes);
    IValue::Tensor(Arc::new(t))
}

/// (a) 64 × Linear(1024, 1024).
fn big_linears() -> ScriptModule {
    let mut root = ModuleBuilder::new("__torch__.Big");
    for i in 0..64 {
        // Fresh tensors per layer (distinct storages), one class for all.
        let mut l = ModuleBuilder::new("__torch__.torch.nn.modules.linear.Linear");
        l.parameter("weight", tensor(&[1024, 1024], i as u8));
        l.parameter("bias", tensor(&[1024], i as u8));
        root.submodule(&format!("l{i}"), &l.build());
    }
    root.build()
}

/// (b) A tree of 500 distinct small module classes, as in spec/README.md's baseline:
/// 20 group classes of 24 leaf classes each (480 + 20), one 4-float parameter per leaf.
fn many_classes() -> ScriptModule {
    let mut root = ModuleBuilder::new("__torch__.Tree");
    for g in 0..20 {
        let mut group = ModuleBuilder::new(&format!("__torch__.Group{g}"));
        for l in 0..24 {
            let mut leaf = ModuleBuilder::new(&format!("__torch__.Leaf{g}_{l}"));
            leaf.parameter("w", tensor(&[4], (g * 24 + l) as u8));
            group.submodule(&format!("l{l}"), &leaf.build());
        }
        root.submodule(&format!("g{g}"), &group.build());
    }
    root.build()
}

/// (c) One module with 5,000 small buffers.
fn many_buffers() -> ScriptModule {
    let mut b = ModuleBuilder::new("__torch__.Buffers");
    for i in 0..5000 {
        b.buffer(&format!("b{i}"), tensor(&[4], i as u8));
    }
    b.build()
}

struct Fixture {
    name: &'static str,
    zip: PathBuf,
    flatbuffer: PathBuf,
    module: ScriptModule,
}

fn fixtures(dir: &Path) -> Vec<Fixture> {
    let mut out = Vec::new();
    for (name, module) in [
        ("a_64_linear_1024", big_linears()),
        ("b_500_classes", many_classes()),
        ("c_5000_buffers", many_buffers()),
    ] {
        let zip = dir.join(format!("{name}.pt"));
        save(
            &module,
            &zip,
            &ExtraFilesMap::new(),
            &SaveOptions::default(),
        )
        .unwrap();
        let flatbuffer = dir.join(format!("{name}.ptl"));
        let fb = write_flatbuffer(
            &MobileModule::new(module.clone(), Vec::new()),
            &WriteOptions::default(),
        )
        .unwrap();
        std::fs::write(&flatbuffer, fb).unwrap();
        out.push(Fixture {
            name,
            zip,
            flatbuffer,
            module,
        });
    }
    out
}

fn benches(c: &mut Criterion) {
    let keep = std::env::var_os("PTCONFORM_BENCH_KEEP").map(PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    for f in fixtures(&dir) {
        let mut g = c.benchmark_group(f.name);
        g.sample_size(10);
        g.bench_function("zip/load", |b| {
            b.iter(|| ptconform::jit::load(&f.zip, None, None).unwrap())
        });
        g.bench_function("zip/inspect", |b| {
            b.iter(|| {
                let data = ptconform::jit::map_file(&f.zip).unwrap();
                ptconform::inspect::facts_of_bytes(data, None).unwrap()
            })
        });
        g.bench_function("zip/check", |b| {
            b.iter(|| ptconform::check::check_file(&f.zip).unwrap())
        });
        let out = dir.join(format!("{}.resaved.pt", f.name));
        g.bench_function("zip/save", |b| {
            b.iter(|| {
                save(
                    &f.module,
                    &out,
                    &ExtraFilesMap::new(),
                    &SaveOptions::default(),
                )
                .unwrap()
            })
        });
        g.bench_function("zip/save_to_buffer", |b| {
            b.iter(|| {
                save_to_buffer(&f.module, &ExtraFilesMap::new(), &SaveOptions::default()).unwrap()
            })
        });
        let copy = dir.join(format!("{}.copy.pt", f.name));
        g.bench_function("zip/file_copy_baseline", |b| {
            b.iter(|| std::fs::copy(&f.zip, &copy).unwrap())
        });
        g.bench_function("flatbuffer/load", |b| {
            b.iter(|| {
                let data = ptconform::jit::map_file(&f.flatbuffer).unwrap();
                read_flatbuffer(&data, None).unwrap()
            })
        });
        g.bench_function("flatbuffer/check", |b| {
            b.iter(|| ptconform::check::check_file(&f.flatbuffer).unwrap())
        });
        let mobile = MobileModule::new(f.module.clone(), Vec::new());
        g.bench_function("flatbuffer/save", |b| {
            b.iter(|| write_flatbuffer(&mobile, &WriteOptions::default()).unwrap())
        });
        g.finish();
    }
}

criterion_group!(formats, benches);
criterion_main!(formats);

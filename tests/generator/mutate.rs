//! The structure-aware mutator on PyTorch's own files: mutants differ, keep their
//! container readable, and never make `check` panic. (Were unit tests of
//! `ptconform_gen::mutate`; they read the corpus, so they live here.)

use arbitrary::Unstructured;
use bytes::Bytes;

use ptconform::pickle::opcodes as op;
use ptconform::zip_archive::ZipArchiveReader;
use ptconform_gen::mutate::{mutate, pickle_ops};

use crate::common;

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(common::corpus(name)).unwrap()
}

#[test]
fn mutants_differ_and_stay_inside_the_container() {
    for name in [
        "linear.pt",
        "containers.pt",
        "linear.ptl",
        "containers.ptl",
        "quantized.ptl",
    ] {
        let data = corpus(name);
        let mut changed = 0;
        let mut readable_container = 0;
        for seed in 0..200u64 {
            let bytes = ptconform_gen::generator::seed_bytes(seed, 3, 64);
            let mut u = Unstructured::new(&bytes);
            let Some(m) = mutate(&data, &mut u) else {
                panic!("{name}: a valid archive must be mutable")
            };
            if m != data {
                changed += 1;
            }
            // The container stays valid: zips re-read, flatbuffers keep their identifier.
            let ok = if name.ends_with(".pt") {
                ZipArchiveReader::from_bytes(Bytes::from(m.clone())).is_ok()
            } else {
                ptconform::flatbuffer::is_flatbuffer(&m)
            };
            if ok {
                readable_container += 1;
            }
            // And checking it never panics.
            let _ = ptconform::check::check_bytes(&m);
        }
        assert!(
            changed >= 150,
            "{name}: only {changed} of 200 mutants differ"
        );
        assert_eq!(readable_container, 200, "{name}");
    }
}

#[test]
fn pickle_opcode_walk_covers_real_pickles() {
    let a = ZipArchiveReader::from_bytes(Bytes::from(corpus("containers.pt"))).unwrap();
    let data = a.read("data.pkl", false).unwrap();
    let ops = pickle_ops(&data);
    assert_eq!(ops.last().map(|o| o.1), Some(op::STOP));
    assert_eq!(ops.last().unwrap().2.end, data.len());
}

/// The shared-value pieces the mutator splices into pickles: a 40-level list DAG (2^40
/// leaves in a few hundred bytes) and one string fetched 10,000 times. They unpickle as
/// shared values, and the mutator does put them into PyTorch's files, which `check`
/// then judges without walking the tree.
#[test]
fn the_mutator_makes_shared_value_dags_and_memo_fan_out() {
    use ptconform::model::IValue;
    use ptconform_gen::mutate::{memo_fan_out, shared_list_dag};
    let wrap = |ops: Vec<u8>| {
        let mut p = vec![op::PROTO, 2];
        p.extend(ops);
        p.push(op::STOP);
        Bytes::from(p)
    };
    let mut no_storages = |_: &ptconform::pickle::StorageRequest| Err("none".to_string());
    let dag = ptconform::pickle::unpickle(&wrap(shared_list_dag(40)), &mut no_storages).unwrap();
    let mut v = &dag.value;
    for _ in 0..40 {
        let IValue::List(l) = v else { panic!("{v:?}") };
        assert_eq!(l.items.len(), 2);
        assert_eq!(
            l.items[0].identity(),
            l.items[1].identity(),
            "shared, not copied"
        );
        v = &l.items[0];
    }
    assert!(matches!(v, IValue::Int(1)));
    let fan =
        ptconform::pickle::unpickle(&wrap(memo_fan_out(4096, 10_000)), &mut no_storages).unwrap();
    let IValue::List(l) = &fan.value else {
        panic!()
    };
    assert_eq!(l.items.len(), 10_000);

    // Over PyTorch's own linear.pt, some mutants carry them (the memo ids the pieces use
    // are far above PyTorch's), and check judges every one.
    let data = corpus("linear.pt");
    let mut with_shared = 0;
    for seed in 0..1000u64 {
        let bytes = ptconform_gen::generator::seed_bytes(seed, 7, 64);
        let Some(m) = mutate(&data, &mut Unstructured::new(&bytes)) else {
            continue;
        };
        let a = ZipArchiveReader::from_bytes(Bytes::from(m.clone())).unwrap();
        let shared = a.records().iter().any(|r| {
            r.name().is_some_and(|n| n.ends_with(".pkl"))
                && a.read_record(r, false).is_ok_and(|d| {
                    d.windows(5)
                        .any(|w| w[0] == op::LONG_BINGET && w[4] >= 0x3f)
                })
        });
        if shared {
            with_shared += 1;
            let _ = ptconform::check::check_bytes(&m);
        }
    }
    assert!(
        with_shared >= 5,
        "only {with_shared} of 1000 mutants hold shared values"
    );
}

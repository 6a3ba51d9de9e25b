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

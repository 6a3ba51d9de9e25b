//! How often each shape the generator promises occurs over 1,000 cases per format; the
//! test fails when one never does (a generator that silently stopped producing
//! something would otherwise go unnoticed).

use std::collections::BTreeMap;

use ptconform::convert::Format;
use ptconform::generator::method::Expr;
use ptconform::generator::tree::DTYPES;
use ptconform::generator::{Config, case_from_seed};

const CASES: u64 = 1000;

#[test]
fn every_shape_occurs() {
    let config = Config::default();
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for format in [Format::Zip, Format::Flatbuffer] {
        for i in 0..CASES {
            let case = case_from_seed(7, i, &config, format);
            for (k, v) in case.tree.coverage {
                *counts.entry(k).or_default() += v;
            }
        }
    }
    let mut required: Vec<String> = [
        "module:plain",
        "module:ModuleList",
        "module:ModuleDict",
        "collision:M",
        "collision:E",
        "collision:T",
        "collision:ModuleList",
        "collision:ModuleDict",
        "tensor:meta",
        "tensor:shared-storage",
        "tensor:transposed-view",
        "tensor:storage-larger-than-view",
        "tensor:empty",
        "tensor:quantized",
        "attr:tensor",
        "attr:int",
        "attr:float",
        "attr:bool",
        "attr:str",
        "attr:optional",
        "attr:list_int",
        "attr:list_float",
        "attr:list_bool",
        "attr:list_str",
        "attr:list_tensor",
        "attr:dict",
        "attr:tuple",
        "attr:device",
        "attr:enum",
        "attr:namedtuple",
        "attr:complex",
        "attr:torchbind",
        "torchbind:bias",
        "extra:empty",
        "extra:text",
        "extra:binary",
        "extra:nested-name",
        "extra:unicode-name",
        "extra:many",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    required.extend(DTYPES.iter().map(|d| format!("dtype:{}", d.name())));
    required.extend(Expr::KINDS.iter().map(|k| format!("method:{k}")));
    required.push("method:function".into());
    println!("{:<36} {:>8}", "shape", "count");
    for (k, v) in &counts {
        println!("{k:<36} {v:>8}");
    }
    let missing: Vec<&String> = required
        .iter()
        .filter(|k| !counts.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "never generated in {CASES} cases per format: {missing:?}"
    );
}

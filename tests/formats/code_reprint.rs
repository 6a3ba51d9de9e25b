//! The code parser and printer against every `code/` file PyTorch 2.15 wrote in the
//! corpus: each parses and prints back byte for byte, and the printer is a fixed point.
//! (Was a unit test of `code`; it reads the corpus, so it lives here.)

use std::path::PathBuf;

use ptconform::code::{format_literal, parse_literal, parse_source, print_source};
use ptconform::model::Definition;

use crate::common;

fn reprint(qualifier: &str, text: &str) -> String {
    let defs = parse_source(qualifier, text).unwrap_or_else(|e| panic!("{qualifier}: {e}"));
    let refs: Vec<&Definition> = defs.iter().collect();
    print_source(&refs)
}

/// Printing what was parsed parses back to the same declarations, and prints the same.
fn assert_stable(qualifier: &str, text: &str) {
    let defs = parse_source(qualifier, text).unwrap();
    let printed = print_source(&defs.iter().collect::<Vec<_>>());
    let again = parse_source(qualifier, &printed)
        .unwrap_or_else(|e| panic!("reprint of {text:?} does not parse: {e}\n{printed}"));
    assert_eq!(again, defs, "input {text:?}\nprinted {printed:?}");
    assert_eq!(print_source(&again.iter().collect::<Vec<_>>()), printed);
}

/// (archive, record name, text) of every `code/*.py` record of the 2.15 corpus.
fn corpus_code_files() -> Vec<(PathBuf, String, String)> {
    let mut out = Vec::new();
    for p in common::corpus_2_15_archives() {
        let archive = ptconform::zip_archive::ZipArchiveReader::open(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        for r in archive.records() {
            let Some(name) = r.name() else { continue };
            if name.starts_with("code/") && name.ends_with(".py") {
                let data = archive.read_record(r, true).unwrap();
                let text = String::from_utf8(data.to_vec())
                    .unwrap_or_else(|e| panic!("{}: {name}: {e}", p.display()));
                out.push((p.clone(), r.full_name.clone(), text));
            }
        }
    }
    out
}

#[test]
fn corpus_code_files_reprint_identically() {
    let files = corpus_code_files();
    assert!(
        files.len() >= 100,
        "only {} code files in the corpus",
        files.len()
    );
    for (archive, name, text) in &files {
        let rel = name.split_once("/code/").map(|(_, r)| r).unwrap_or(name);
        let qualifier = rel.trim_end_matches(".py").replace('/', ".");
        let out = reprint(&qualifier, text);
        assert_eq!(&out, text, "{}: {name}", archive.display());
        assert_stable(&qualifier, text);
        // Constant literals are understood, except constants moved to constants.pkl.
        for d in parse_source(&qualifier, text).unwrap() {
            if let Definition::Class(c) = &d {
                for k in &c.constants {
                    if !k.literal.starts_with("CONSTANTS.") {
                        let lit = parse_literal(&k.literal).unwrap();
                        assert_eq!(format_literal(&lit), k.literal);
                    }
                }
            }
        }
    }
    println!("{} code files re-printed identically", files.len());
}

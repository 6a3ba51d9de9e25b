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

/// Random edits of every corpus code file (a token inserted, a span cut or doubled) never
/// make the parser panic, and whatever still parses prints stably: deeper paths than
/// garbage reaches, from PyTorch's own texts.
#[test]
fn corpus_code_files_survive_random_edits() {
    const TOKENS: &[&str] = &[
        "class ",
        "def ",
        "(",
        ")",
        "[",
        "]",
        ":",
        " : ",
        "=",
        ",",
        "\n",
        "\n  ",
        "\t",
        "\"",
        "'",
        "#",
        "\\",
        "Optional[",
        "Tuple[",
        "__torch__.",
        "___torch_mangle_",
        "-> ",
        "...",
    ];
    let sources: Vec<String> = corpus_code_files().into_iter().map(|(_, _, t)| t).collect();
    let mut parsed = 0;
    for round in 0..3000u64 {
        let r = ptconform_gen::generator::seed_bytes(round, 0, 64);
        let word = |k: usize| u64::from_le_bytes(r[k * 8..k * 8 + 8].try_into().unwrap()) as usize;
        let mut t = sources[word(0) % sources.len()].clone();
        let mut at = word(1) % (t.len() + 1);
        while !t.is_char_boundary(at) {
            at -= 1;
        }
        let mut end = (at + 1 + word(2) % 30).min(t.len());
        while !t.is_char_boundary(end) {
            end += 1;
        }
        match word(3) % 3 {
            0 => t.insert_str(at, TOKENS[word(4) % TOKENS.len()]),
            1 => t.replace_range(at..end, ""),
            _ => {
                let dup = t[at..end].to_string();
                t.insert_str(at, &dup);
            }
        }
        if parse_source("__torch__.m", &t).is_ok() {
            assert_stable("__torch__.m", &t);
            parsed += 1;
        }
    }
    // Edits that keep the text valid (inside a comment or string, a doubled line) happen.
    assert!(parsed > 100, "only {parsed} of 3000 edited files parse");
}

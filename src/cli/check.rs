//! `ptconform check`: every conformance finding in each file, `FILE: RULE: message`.

use super::*;

pub(super) fn run(files: &[PathBuf], release: Option<Release>) -> i32 {
    let mut code = EXIT_OK;
    for file in files {
        let targets: Vec<PathBuf> = if file.is_dir() {
            let mut v: Vec<PathBuf> = match std::fs::read_dir(file) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "pt" || e == "ptl"))
                    .collect(),
                Err(e) => {
                    eprintln!("{}: error: {e}", file.display());
                    code = EXIT_USAGE;
                    continue;
                }
            };
            v.sort();
            v
        } else {
            vec![file.clone()]
        };
        for t in targets {
            let checked = match release {
                Some(r) => ptconform_core::check::check_file_for(&t, r),
                None => ptconform_core::check::check_file(&t),
            };
            match checked {
                Ok(violations) if violations.is_empty() => {
                    println!("{}: ok", t.display());
                }
                Ok(violations) => {
                    for v in violations {
                        println!(
                            "{}: {}: {}: {}",
                            t.display(),
                            v.rule,
                            ptconform_core::display::escaped(&v.location.to_string()),
                            v.message
                        );
                    }
                    if code == EXIT_OK {
                        code = EXIT_FINDING;
                    }
                }
                Err(e) => {
                    eprintln!("{}: error: {e}", t.display());
                    code = EXIT_USAGE;
                }
            }
        }
    }
    code
}

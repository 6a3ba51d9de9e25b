//! Writes every "one offset field absent" mutant of each flatbuffer given (see
//! `ptconform::mutate::field_drop_mutants`) to DIR, as `<name>.drop<K>.ptl`; used to
//! find which absent fields crash PyTorch (corpus/torch-crashes/README.md).
//!
//!     cargo run --example field_drops -- DIR FILE.ptl...
use std::path::Path;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((dir, files)) = args.split_first() else {
        eprintln!("usage: field_drops DIR FILE.ptl...");
        std::process::exit(2);
    };
    std::fs::create_dir_all(dir)?;
    for f in files {
        let data = std::fs::read(f)?;
        let stem = Path::new(f).file_stem().unwrap().to_string_lossy();
        let mutants = ptconform::mutate::field_drop_mutants(&data);
        for (k, m) in mutants.iter().enumerate() {
            std::fs::write(Path::new(dir).join(format!("{stem}.drop{k}.ptl")), m)?;
        }
        println!("{f}: {} mutants", mutants.len());
    }
    Ok(())
}

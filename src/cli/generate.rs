//! `ptconform gen`: random modules written as archives with their predicted facts.

use super::*;

pub(super) fn run(
    seed: u64,
    count: u64,
    out: &Path,
    format: GenFormat,
    config: Option<&Path>,
    release: Option<Release>,
) -> i32 {
    let config: ptconform_gen::generator::Config = match config {
        None => Default::default(),
        Some(p) => match std::fs::read(p)
            .map_err(|e| e.to_string())
            .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: error: {e}", p.display());
                return EXIT_USAGE;
            }
        },
    };
    let outputs = &formats(format);
    let mut config = config.bounded();
    if let Some(release) = release {
        config.release = release;
    }
    match ptconform_gen::generator::write_cases(seed, count, out, outputs, &config) {
        Ok(paths) => {
            println!(
                "wrote {} archives (and their facts) to {}",
                paths.len(),
                out.display()
            );
            EXIT_OK
        }
        Err(e @ Error::Io { .. }) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
        Err(e) => {
            eprintln!("error: generated case failed to save: {e}");
            EXIT_FINDING
        }
    }
}

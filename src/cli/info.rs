//! `ptconform info`: a one-screen summary of a file.

use super::*;

pub(super) fn run(file: &Path) -> i32 {
    let info = map_file(file).and_then(|data| ptconform_core::jit::get_model_info(&data));
    match info {
        Ok(info) => match serde_json::to_string_pretty(&info) {
            Ok(text) => {
                let mut out = std::io::stdout().lock();
                if out
                    .write_all(text.as_bytes())
                    .and_then(|_| out.write_all(b"\n"))
                    .is_err()
                {
                    return EXIT_USAGE;
                }
                EXIT_OK
            }
            Err(e) => {
                eprintln!("{}: error: {e}", file.display());
                EXIT_USAGE
            }
        },
        Err(e) => report_error(file, &e),
    }
}

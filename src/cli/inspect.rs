//! `ptconform inspect`: what `torch.jit.load` sees in a file, as text or JSON.

use super::*;

pub(super) fn run(file: &Path, json: bool, map_location: Option<&str>) -> i32 {
    let map_location = match map_location.map(Device::parse).transpose() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --map-location: {e}");
            return EXIT_USAGE;
        }
    };
    let result =
        map_file(file).and_then(|data| ptconform_core::inspect::facts_of_bytes(data, map_location));
    match result {
        Ok(facts) => {
            let text = if json {
                serde_json::to_string_pretty(&facts).unwrap_or_default() + "\n"
            } else {
                ptconform_core::inspect::report(&facts)
            };
            let _ = std::io::stdout().write_all(text.as_bytes());
            EXIT_OK
        }
        Err(e) => report_error(file, &e),
    }
}

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
            let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
            // Straight from the typed facts to the writer: no JSON tree in between.
            let written = if json {
                serde_json::to_writer_pretty(&mut out, &facts)
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
            } else {
                out.write_all(ptconform_core::inspect::report(&facts).as_bytes())
            };
            // A closed pipe (`| head`) is not an error of the file.
            let _ = written.and_then(|()| out.flush());
            EXIT_OK
        }
        Err(e) => report_error(file, &e),
    }
}

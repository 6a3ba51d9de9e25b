//! `ptconform dump`: every record, pickle opcode and flatbuffer table, for reading.

use super::*;

pub(super) fn run(file: &Path) -> i32 {
    let data = match map_file(file) {
        Ok(d) => d,
        Err(e) => return report_error(file, &e),
    };
    match crate::dump::dump_report(&data) {
        Ok(d) => {
            if std::io::stdout().write_all(d.text.as_bytes()).is_err() {
                return EXIT_USAGE;
            }
            let mut code = EXIT_OK;
            for p in &d.problems {
                code = report_error(file, &Error::Format(p.clone()));
            }
            code
        }
        Err(e) => report_error(file, &e),
    }
}

//! `ptconform diff`: what differs between two files, as a model and as bytes.

use super::*;

pub(super) fn run(a: &Path, b: &Path, json: bool) -> i32 {
    let (da, db) = match (map_file(a), map_file(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) => return report_error(a, &e),
        (_, Err(e)) => return report_error(b, &e),
    };
    let report = match crate::diff::diff(&da, &db) {
        Ok(r) => r,
        // Name the file that failed to load.
        Err(e) => {
            let culprit = if crate::diff::load_check(&da).is_err() {
                a
            } else {
                b
            };
            return report_error(culprit, &e);
        }
    };
    let text = if json {
        serde_json::to_string_pretty(&report.to_json()).unwrap_or_default() + "\n"
    } else {
        report.to_text()
    };
    if std::io::stdout().write_all(text.as_bytes()).is_err() {
        return EXIT_USAGE;
    }
    if report.is_equal() {
        EXIT_OK
    } else {
        EXIT_FINDING
    }
}

//! `ptconform convert`: between the zip archive, the mobile zip and the flatbuffer.

use super::*;

pub(super) fn run(
    input: &Path,
    output: &Path,
    format: Option<ConvertTo>,
    pytorch_names: bool,
    release: Option<Release>,
) -> i32 {
    use ptconform_core::convert::{Format, Target, convert_file};
    use ptconform_core::flatbuffer::NameMode;
    let format = match format
        .map(Target::from)
        .or_else(|| Format::from_extension(output).map(Target::from))
    {
        Some(f) => f,
        None => match std::fs::read(input) {
            Ok(d) => match Format::of(&d) {
                Format::Zip => Target::Flatbuffer,
                Format::Flatbuffer => Target::Zip,
            },
            Err(e) => return report_error(input, &Error::io(input.display().to_string(), e)),
        },
    };
    let names = if pytorch_names {
        NameMode::PyTorch
    } else {
        NameMode::Unique
    };
    let options = ptconform_core::convert::Options { names, release };
    match convert_file(input, output, format, options) {
        Ok(()) => EXIT_OK,
        Err(e @ Error::Io { .. }) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
        Err(e) => report_error(input, &e),
    }
}

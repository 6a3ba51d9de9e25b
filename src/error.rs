//! Errors shared by the codecs. Every error about input bytes names where it happened:
//! the record (zip entry or flatbuffer field) and the byte offset inside it.

use std::fmt;

/// Where in an archive a problem was found.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Location {
    /// Record name inside the archive (`data.pkl`, `code/__torch__.py`), or empty for the
    /// container itself.
    pub record: String,
    /// Byte offset inside that record (or inside the file for container errors).
    pub offset: Option<u64>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.record.is_empty(), self.offset) {
            (true, Some(o)) => write!(f, "at file offset {o}"),
            (true, None) => f.write_str("in archive"),
            (false, Some(o)) => write!(f, "in record {:?} at offset {o}", self.record),
            (false, None) => write!(f, "in record {:?}", self.record),
        }
    }
}

/// A stable identifier of a conformance rule (documented in the README). Every format
/// error carries one, so `check` can print `FILE: RULE: message`.
pub type Rule = &'static str;

/// Input that does not conform to the format.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{rule}: {location}: {message}")]
pub struct FormatError {
    pub rule: Rule,
    pub location: Location,
    pub message: String,
}

impl FormatError {
    pub fn new(
        rule: Rule,
        record: impl Into<String>,
        offset: Option<u64>,
        message: impl Into<String>,
    ) -> Self {
        FormatError {
            rule,
            location: Location {
                record: record.into(),
                offset,
            },
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl Error {
    pub fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn as_format(&self) -> Option<&FormatError> {
        match self {
            Error::Format(f) => Some(f),
            Error::Io { .. } => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Rule identifiers. Keep in sync with the README's table.
pub mod rules {
    use super::Rule;
    pub const ZIP_STRUCTURE: Rule = "zip-structure";
    pub const ZIP_CRC: Rule = "zip-crc";
    pub const ZIP_COMPRESSION: Rule = "zip-compression";
    pub const ZIP_ALIGNMENT: Rule = "zip-alignment";
    pub const ZIP_PREFIX: Rule = "zip-prefix";
    pub const RECORD_MISSING: Rule = "record-missing";
    pub const RECORD_SIZE: Rule = "record-size";
    pub const LEGACY_FORMAT: Rule = "legacy-format";
    pub const VERSION: Rule = "version";
    pub const PICKLE_OPCODE: Rule = "pickle-opcode";
    pub const PICKLE_GLOBAL: Rule = "pickle-global";
    pub const PICKLE_STRUCTURE: Rule = "pickle-structure";
    pub const PICKLE_DEPTH: Rule = "pickle-depth";
    pub const PICKLE_TRAILING: Rule = "pickle-trailing-data";
    pub const STORAGE: Rule = "storage";
    pub const CODE_SYNTAX: Rule = "code-syntax";
    pub const CODE_ENCODING: Rule = "code-encoding";
    pub const TYPE_UNKNOWN: Rule = "type-unknown";
    pub const TYPE_REDEFINED: Rule = "type-redefined";
    pub const OBJECT_ATTRIBUTES: Rule = "object-attributes";
    pub const ATTRIBUTE_TYPE: Rule = "attribute-type";
    pub const MODULE_TREE: Rule = "module-tree";
    pub const EXTRA_NAME: Rule = "extra-file-name";
    pub const FLATBUFFER: Rule = "flatbuffer";
    pub const FLATBUFFER_TYPES: Rule = "flatbuffer-object-types";
    pub const FLATBUFFER_ENUM: Rule = "flatbuffer-enum";
    pub const FLATBUFFER_MISSING: Rule = "flatbuffer-missing-field";
    pub const CODE_NESTING: Rule = "code-nesting";
    pub const VERSION_TEXT: Rule = "version-text";
    pub const MOBILE_BYTECODE: Rule = "mobile-bytecode";
    pub const FLATBUFFER_UPGRADER: Rule = "flatbuffer-upgrader";
    /// `check --for-pytorch V`: the file holds tensors of a dtype release V cannot load.
    pub const RELEASE_DTYPE: Rule = "release-dtype";
}

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

pub use crate::rule::Rule;

/// Input that does not conform to the format.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{rule}: {location}: {message}")]
pub struct FormatError {
    pub rule: Rule,
    pub location: Location,
    pub message: String,
}

impl FormatError {
    /// The same error under a more precise rule (for helpers shared by several rules).
    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rule = rule;
        self
    }

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

/// The rules under their old constant names (`rules::ZIP_CRC` is [`Rule::ZipCrc`]).
pub mod rules {
    pub use crate::rule::Rule;
    pub const ZIP_STRUCTURE: Rule = Rule::ZipStructure;
    pub const ZIP_CRC: Rule = Rule::ZipCrc;
    pub const ZIP_COMPRESSION: Rule = Rule::ZipCompression;
    pub const ZIP_PREFIX: Rule = Rule::ZipPrefix;
    pub const RECORD_MISSING: Rule = Rule::RecordMissing;
    pub const RECORD_SIZE: Rule = Rule::RecordSize;
    pub const LEGACY_FORMAT: Rule = Rule::LegacyFormat;
    pub const VERSION: Rule = Rule::Version;
    pub const VERSION_TEXT: Rule = Rule::VersionText;
    pub const PICKLE_OPCODE: Rule = Rule::PickleOpcode;
    pub const PICKLE_GLOBAL: Rule = Rule::PickleGlobal;
    pub const PICKLE_STRUCTURE: Rule = Rule::PickleStructure;
    pub const PICKLE_DEPTH: Rule = Rule::PickleDepth;
    pub const PICKLE_TRAILING: Rule = Rule::PickleTrailingData;
    pub const STORAGE: Rule = Rule::Storage;
    pub const CODE_SYNTAX: Rule = Rule::CodeSyntax;
    pub const CODE_NESTING: Rule = Rule::CodeNesting;
    pub const CODE_ENCODING: Rule = Rule::CodeEncoding;
    pub const TYPE_UNKNOWN: Rule = Rule::TypeUnknown;
    pub const TYPE_REDEFINED: Rule = Rule::TypeRedefined;
    pub const OBJECT_ATTRIBUTES: Rule = Rule::ObjectAttributes;
    pub const ATTRIBUTE_TYPE: Rule = Rule::AttributeType;
    pub const MODULE_TREE: Rule = Rule::ModuleTree;
    pub const EXTRA_NAME: Rule = Rule::ExtraFileName;
    pub const FLATBUFFER: Rule = Rule::Flatbuffer;
    pub const FLATBUFFER_IDENTIFIER: Rule = Rule::FlatbufferIdentifier;
    pub const FLATBUFFER_VERIFIER: Rule = Rule::FlatbufferVerifier;
    pub const FLATBUFFER_INDEX: Rule = Rule::FlatbufferIndex;
    pub const FLATBUFFER_OPCODE: Rule = Rule::FlatbufferOpcode;
    pub const CONVERT_NEEDS_BYTECODE: Rule = Rule::ConvertNeedsBytecode;
    pub const FLATBUFFER_TYPES: Rule = Rule::FlatbufferObjectTypes;
    pub const FLATBUFFER_UNREPRESENTABLE: Rule = Rule::FlatbufferUnrepresentable;
    pub const FLATBUFFER_MISSING: Rule = Rule::FlatbufferMissingField;
    pub const FLATBUFFER_ENUM: Rule = Rule::FlatbufferEnum;
    pub const FLATBUFFER_UPGRADER: Rule = Rule::FlatbufferUpgrader;
    pub const RELEASE_DTYPE: Rule = Rule::ReleaseDtype;
    pub const MOBILE_BYTECODE: Rule = Rule::MobileBytecode;
}

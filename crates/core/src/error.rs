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
    /// The conformance rule the input breaks (what `check` prints first).
    pub rule: Rule,
    /// The record and byte offset where the problem was found.
    pub location: Location,
    /// What is wrong, in one line, for a reader of `check`'s output.
    pub message: String,
}

impl FormatError {
    /// The same error under a more precise rule (for helpers shared by several rules).
    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rule = rule;
        self
    }

    /// An error under `rule` in `record` (empty for the container) at `offset`.
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

/// Any failure of the crate's API: the file system, or input that does not conform.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The path of the file read or written, as shown in the message.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The input breaks a conformance rule.
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl Error {
    /// An [`Error::Io`] on `path`.
    pub fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The [`FormatError`], if this is one (`None` for I/O failures).
    pub fn as_format(&self) -> Option<&FormatError> {
        match self {
            Error::Format(f) => Some(f),
            Error::Io { .. } => None,
        }
    }
}

/// The crate's result type, with [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The rules under their old constant names (`rules::ZIP_CRC` is [`Rule::ZipCrc`]).
pub mod rules {
    pub use crate::rule::Rule;
    /// [`Rule::ZipStructure`] (`zip-structure`).
    pub const ZIP_STRUCTURE: Rule = Rule::ZipStructure;
    /// [`Rule::ZipCrc`] (`zip-crc`).
    pub const ZIP_CRC: Rule = Rule::ZipCrc;
    /// [`Rule::ZipCompression`] (`zip-compression`).
    pub const ZIP_COMPRESSION: Rule = Rule::ZipCompression;
    /// [`Rule::ZipPrefix`] (`zip-prefix`).
    pub const ZIP_PREFIX: Rule = Rule::ZipPrefix;
    /// [`Rule::ZipOverlap`] (`zip-overlap`).
    pub const ZIP_OVERLAP: Rule = Rule::ZipOverlap;
    /// [`Rule::ZipLocalName`] (`zip-local-name`).
    pub const ZIP_LOCAL_NAME: Rule = Rule::ZipLocalName;
    /// [`Rule::RecordBudget`] (`record-budget`): a record over the memory budget for
    /// records held whole (`--max-record-bytes`), or whose buffer cannot be allocated.
    pub const RECORD_BUDGET: Rule = Rule::RecordBudget;
    /// [`Rule::RecordMissing`] (`record-missing`).
    pub const RECORD_MISSING: Rule = Rule::RecordMissing;
    /// [`Rule::RecordSize`] (`record-size`).
    pub const RECORD_SIZE: Rule = Rule::RecordSize;
    /// [`Rule::LegacyFormat`] (`legacy-format`).
    pub const LEGACY_FORMAT: Rule = Rule::LegacyFormat;
    /// [`Rule::Version`] (`version`).
    pub const VERSION: Rule = Rule::Version;
    /// [`Rule::VersionText`] (`version-text`).
    pub const VERSION_TEXT: Rule = Rule::VersionText;
    /// [`Rule::PickleOpcode`] (`pickle-opcode`).
    pub const PICKLE_OPCODE: Rule = Rule::PickleOpcode;
    /// [`Rule::PickleGlobal`] (`pickle-global`).
    pub const PICKLE_GLOBAL: Rule = Rule::PickleGlobal;
    /// [`Rule::PickleStructure`] (`pickle-structure`).
    pub const PICKLE_STRUCTURE: Rule = Rule::PickleStructure;
    /// [`Rule::PickleDepth`] (`pickle-depth`).
    pub const PICKLE_DEPTH: Rule = Rule::PickleDepth;
    /// [`Rule::PickleTrailingData`] (`pickle-trailing-data`).
    pub const PICKLE_TRAILING: Rule = Rule::PickleTrailingData;
    /// [`Rule::Storage`] (`storage`).
    pub const STORAGE: Rule = Rule::Storage;
    /// [`Rule::CodeSyntax`] (`code-syntax`).
    pub const CODE_SYNTAX: Rule = Rule::CodeSyntax;
    /// [`Rule::CodeNesting`] (`code-nesting`).
    pub const CODE_NESTING: Rule = Rule::CodeNesting;
    /// [`Rule::CodeEncoding`] (`code-encoding`).
    pub const CODE_ENCODING: Rule = Rule::CodeEncoding;
    /// [`Rule::TypeUnknown`] (`type-unknown`).
    pub const TYPE_UNKNOWN: Rule = Rule::TypeUnknown;
    /// [`Rule::TypeRedefined`] (`type-redefined`).
    pub const TYPE_REDEFINED: Rule = Rule::TypeRedefined;
    /// [`Rule::ObjectAttributes`] (`object-attributes`).
    pub const OBJECT_ATTRIBUTES: Rule = Rule::ObjectAttributes;
    /// [`Rule::AttributeType`] (`attribute-type`).
    pub const ATTRIBUTE_TYPE: Rule = Rule::AttributeType;
    /// [`Rule::ModuleTree`] (`module-tree`).
    pub const MODULE_TREE: Rule = Rule::ModuleTree;
    /// [`Rule::ExtraFileName`] (`extra-file-name`).
    pub const EXTRA_NAME: Rule = Rule::ExtraFileName;
    /// [`Rule::Flatbuffer`] (`flatbuffer`).
    pub const FLATBUFFER: Rule = Rule::Flatbuffer;
    /// [`Rule::FlatbufferIdentifier`] (`flatbuffer-identifier`).
    pub const FLATBUFFER_IDENTIFIER: Rule = Rule::FlatbufferIdentifier;
    /// [`Rule::FlatbufferVerifier`] (`flatbuffer-verifier`).
    pub const FLATBUFFER_VERIFIER: Rule = Rule::FlatbufferVerifier;
    /// [`Rule::FlatbufferIndex`] (`flatbuffer-index`).
    pub const FLATBUFFER_INDEX: Rule = Rule::FlatbufferIndex;
    /// [`Rule::FlatbufferOpcode`] (`flatbuffer-opcode`).
    pub const FLATBUFFER_OPCODE: Rule = Rule::FlatbufferOpcode;
    /// [`Rule::ConvertNeedsBytecode`] (`convert-needs-bytecode`).
    pub const CONVERT_NEEDS_BYTECODE: Rule = Rule::ConvertNeedsBytecode;
    /// [`Rule::FlatbufferObjectTypes`] (`flatbuffer-object-types`).
    pub const FLATBUFFER_TYPES: Rule = Rule::FlatbufferObjectTypes;
    /// [`Rule::FlatbufferUnrepresentable`] (`flatbuffer-unrepresentable`).
    pub const FLATBUFFER_UNREPRESENTABLE: Rule = Rule::FlatbufferUnrepresentable;
    /// [`Rule::FlatbufferMissingField`] (`flatbuffer-missing-field`).
    pub const FLATBUFFER_MISSING: Rule = Rule::FlatbufferMissingField;
    /// [`Rule::FlatbufferEnum`] (`flatbuffer-enum`).
    pub const FLATBUFFER_ENUM: Rule = Rule::FlatbufferEnum;
    /// [`Rule::FlatbufferUpgrader`] (`flatbuffer-upgrader`).
    pub const FLATBUFFER_UPGRADER: Rule = Rule::FlatbufferUpgrader;
    /// [`Rule::ReleaseDtype`] (`release-dtype`).
    pub const RELEASE_DTYPE: Rule = Rule::ReleaseDtype;
    /// [`Rule::MobileBytecode`] (`mobile-bytecode`).
    pub const MOBILE_BYTECODE: Rule = Rule::MobileBytecode;
}

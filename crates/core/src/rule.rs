//! The conformance rules: one variant per kind of failure, each with a stable id (what
//! `check` prints, `FILE: RULE: message`), the layer of the format it belongs to and a
//! one-line summary. The README's rule table is this list, a test keeps the two equal.

use std::fmt;

/// The layer of the file formats a rule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The zip container (central directory, local headers, compression, CRCs).
    Zip,
    /// The records a TorchScript zip archive must hold and their version.
    Archive,
    /// TorchScript's pickle dialect (`data.pkl`, `constants.pkl`, `bytecode.pkl`).
    Pickle,
    /// Tensors and their storages, in either format.
    Tensor,
    /// The TorchScript sources (`code/`, a flatbuffer's `jit_sources`).
    Code,
    /// The module the values and types describe, in either format.
    Model,
    /// The mobile flatbuffer (`PTMF`).
    Flatbuffer,
    /// A mobile zip's bytecode (`bytecode.pkl`).
    MobileBytecode,
    /// What an older PyTorch release can read (`check --for-pytorch VERSION`).
    Release,
    /// A conversion between formats that the content does not allow.
    Convert,
}

impl Layer {
    /// The name the README's rule table shows.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Zip => "zip",
            Layer::Archive => "archive",
            Layer::Pickle => "pickle",
            Layer::Tensor => "tensor",
            Layer::Code => "code",
            Layer::Model => "model",
            Layer::Flatbuffer => "flatbuffer",
            Layer::MobileBytecode => "mobile zip",
            Layer::Release => "release",
            Layer::Convert => "convert",
        }
    }
}

macro_rules! rules {
    ($($(#[$doc:meta])* $variant:ident = $id:literal, $layer:ident, $summary:literal;)*) => {
        /// A conformance rule. Every [`FormatError`](crate::FormatError) carries one.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Rule {
            $($(#[$doc])* #[doc = $summary] $variant,)*
        }

        impl Rule {
            /// Every rule, in the README's order.
            pub const ALL: &'static [Rule] = &[$(Rule::$variant),*];

            /// The stable id `check` prints (`zip-crc`).
            pub fn id(self) -> &'static str {
                match self { $(Rule::$variant => $id,)* }
            }

            /// The layer of the formats the rule belongs to.
            pub fn layer(self) -> Layer {
                match self { $(Rule::$variant => Layer::$layer,)* }
            }

            /// One line on what the rule refuses (the README table's text).
            pub fn summary(self) -> &'static str {
                match self { $(Rule::$variant => $summary,)* }
            }
        }
    };
}

rules! {
    ZipStructure = "zip-structure", Zip,
        "not a readable zip (no end of central directory, bad local header, ...)";
    ZipCrc = "zip-crc", Zip, "a record's CRC-32 differs from the central directory";
    ZipCompression = "zip-compression", Zip,
        "corrupt deflate stream, an unsupported compression method, or encrypted / patch-data records (flag bits 0, 5, 6) that miniz does not extract";
    ZipPrefix = "zip-prefix", Zip,
        "an entry outside the archive's top-level folder (PyTorch ignores it)";
    ZipOverlap = "zip-overlap", Zip,
        "central-directory entries whose records share bytes: many entries naming one record, or one pointing inside another's data, so extracting writes more than the file holds (PyTorch 2.15 loads such files)";
    ZipLocalName = "zip-local-name", Zip,
        "a local header whose name differs from its central-directory entry's (PyTorch 2.15 loads such files under the directory's name)";
    RecordBudget = "record-budget", Zip,
        "a record ptconform must hold in memory (deflated, or a `code/` file) is larger than `--max-record-bytes` (default 256 MiB), or its buffer cannot be allocated; PyTorch's `getRecord` allocates every record whole (a 1 GB code file of newlines crashes it)";
    RecordMissing = "record-missing", Archive,
        "a required record (`data.pkl`, `constants.pkl`, `version`) is absent";
    RecordSize = "record-size", Archive,
        "a record extends past the file, or its declared size is impossible or wrong (PyTorch 2.15 loads a deflate record that inflates past its declared size)";
    LegacyFormat = "legacy-format", Archive, "the `PYTORCH1` preview format";
    Version = "version", Archive,
        "`version` record not a number as PyTorch reads it (`std::stoull`), or outside 1–10";
    VersionText = "version-text", Archive,
        "a version PyTorch reads but never writes (`3junk`, ` 3`, `+3`: loaded as 3)";
    PickleOpcode = "pickle-opcode", Pickle, "an opcode outside TorchScript's pickle dialect";
    PickleGlobal = "pickle-global", Pickle,
        "a global outside the allow-list (e.g. `os.system`), never resolved";
    PickleStructure = "pickle-structure", Pickle,
        "malformed pickle (truncation, stack misuse, wrong argument shapes, a container changed after it was shared: PyTorch 2.15 loads a list containing itself)";
    PickleDepth = "pickle-depth", Pickle, "values nested deeper than 1000 levels";
    PickleTrailingData = "pickle-trailing-data", Pickle, "bytes after the pickle's STOP";
    Storage = "storage", Tensor,
        "a storage record missing or too small, a view outside its storage, bad device";
    CodeSyntax = "code-syntax", Code, "a `code/` declaration that does not parse as PyTorch writes it (PyTorch 2.15 loads tab indentation, and an unused class with an unknown base such as `class K(__torch__.K)`)";
    CodeNesting = "code-nesting", Code,
        "an expression nested more than 1,000 deep in code, counting brackets and operator chains (PyTorch's recursive parser crashes on such files: 5,000 brackets, or a 12,000-term `x + x + ...`; see `corpus/torch-crashes/`)";
    CodeEncoding = "code-encoding", Code, "a `code/` file that is not UTF-8";
    TypeUnknown = "type-unknown", Model,
        "a class/enum used by the pickle but not defined in `code/`";
    TypeRedefined = "type-redefined", Model, "a qualified name defined twice";
    ObjectAttributes = "object-attributes", Model,
        "a pickled attribute the class does not declare, or a declared one missing";
    AttributeType = "attribute-type", Model,
        "an attribute value that does not match its declared type";
    ModuleTree = "module-tree", Model,
        "the module tree is too large: over 1,000,000 paths or 64 MiB of path names (shared submodules, long names); in `check` also a zip archive's objects reached by over 1,000,000 paths (PyTorch's `torch.jit.load` walks each path and does not finish on a 2^40-path object DAG)";
    ExtraFileName = "extra-file-name", Archive,
        "a record or flatbuffer extra-file name that breaks the extra-file name rule (CLI, `extra`): empty, absolute, `\\`, NUL, a `..`, `.` or empty component, a component over 255 bytes, not UTF-8, or an extra file that is also another's directory (in a flatbuffer also a name used twice; a NUL is allowed there, as PyTorch writes it)";
    Flatbuffer = "flatbuffer", Flatbuffer,
        "a flatbuffer field out of its domain that no precise `flatbuffer-*` rule covers: a cycle, a bad union tag or scalar type, a storage shorter than its tensor, a negative stride or storage offset, sources that are not UTF-8 (the field is named; PyTorch 2.15 loads cycles, negative strides and offsets, and non-UTF-8 sources)";
    FlatbufferIdentifier = "flatbuffer-identifier", Flatbuffer,
        "bytes 4..8 are not `PTMF` where a flatbuffer is required (was `flatbuffer`)";
    FlatbufferVerifier = "flatbuffer-verifier", Flatbuffer,
        "the flatbuffers verifier refuses the buffer: an offset out of bounds, misaligned, past the depth or table limits (over 1,000,000 tables: PyTorch refuses too), or a string that is not UTF-8 (PyTorch 2.15 loads that) (was `flatbuffer`)";
    FlatbufferIndex = "flatbuffer-index", Flatbuffer,
        "an index into `ivalues`, `object_types`, `storage_data` or a method's tables that is out of range (was `flatbuffer`)";
    FlatbufferOpcode = "flatbuffer-opcode", Flatbuffer,
        "an instruction with an unknown opcode or an operand out of range (was `flatbuffer`)";
    FlatbufferObjectTypes = "flatbuffer-object-types", Flatbuffer,
        "distinct classes merged into one `ObjectType` (PyTorch's flatbuffer writer does not make colliding names unique; its `torch.jit.load` then misreads or crashes)";
    FlatbufferMissingField = "flatbuffer-missing-field", Flatbuffer,
        "an offset field (vector, string, table) absent that PyTorch's writer always writes and its loader follows unchecked: `torch.jit.load` crashes on such files (measured over 203 mutants, see `corpus/torch-crashes/`)";
    FlatbufferEnum = "flatbuffer-enum", Flatbuffer,
        "an enum value: PyTorch 2.15's flatbuffer loaders reject every enum (\"Enum with type ... not found\")";
    FlatbufferUpgrader = "flatbuffer-upgrader", Flatbuffer,
        "`torch.gelu(..., approximate=...)` in a flatbuffer's `jit_sources`: `torch.jit.load` compiles them with gelu's old-version upgrader and fails (\"Arguments for call are not valid\"); the lite interpreter loads the file";
    ReleaseDtype = "release-dtype", Release,
        "only with `check --for-pytorch VERSION`: a tensor of a dtype that release does not have (`torch.UInt16Storage` before 2.3): its unpickler refuses the storage class, its flatbuffer loader the scalar type";
    MobileBytecode = "mobile-bytecode", MobileBytecode,
        "a mobile zip's `bytecode.pkl` (or `mobile_debug_handles.pkl`) that is not the lite interpreter's structure: an unknown opcode, an operator or constant index out of range, a missing or mistyped field (`torch.jit.load` ignores the record; `_load_for_lite_interpreter` fails)";
    ConvertNeedsBytecode = "convert-needs-bytecode", Convert,
        "`convert` to a flatbuffer or mobile zip from an archive without mobile bytecode (only compiling its code would give it; was `flatbuffer`)";
    FlatbufferUnrepresentable = "flatbuffer-unrepresentable", Convert,
        "writing a flatbuffer (`convert`, `roundtrip`, `gen`) of a model it cannot hold: sparse or meta tensors, a quantization scheme or number beyond its 32-bit fields, over 2 GiB of data, values that unfold past its limit (was `flatbuffer`)";
}

impl Rule {
    /// The rule with this id; the ids split out of `flatbuffer` are only found by their
    /// own names (`from_id("flatbuffer")` is [`Rule::Flatbuffer`]).
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.id() == id)
    }

    /// The rule's id before it was split from the catch-all `flatbuffer` rule, for
    /// scripts that match on the old id.
    pub fn legacy_id(self) -> &'static str {
        match self {
            Rule::FlatbufferIdentifier
            | Rule::FlatbufferVerifier
            | Rule::FlatbufferIndex
            | Rule::FlatbufferOpcode
            | Rule::ConvertNeedsBytecode
            | Rule::FlatbufferUnrepresentable => "flatbuffer",
            other => other.id(),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl PartialEq<str> for Rule {
    fn eq(&self, other: &str) -> bool {
        self.id() == other
    }
}

impl PartialEq<&str> for Rule {
    fn eq(&self, other: &&str) -> bool {
        self.id() == *other
    }
}

impl serde::Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table, as this list renders it.
    fn table() -> String {
        let mut out = String::from("| rule | layer | meaning |\n|---|---|---|\n");
        for r in Rule::ALL {
            out += &format!(
                "| `{}` | {} | {} |\n",
                r.id(),
                r.layer().name(),
                r.summary()
            );
        }
        out
    }

    #[test]
    fn the_readme_table_is_the_rule_list() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let start = readme.find("| rule | layer | meaning |").unwrap_or(0);
        let end = readme[start..]
            .find("\n\n")
            .map_or(readme.len(), |e| start + e + 1);
        assert!(
            readme[start..end] == table(),
            "README.md's rule table differs from Rule::ALL; it should read:\n{}",
            table()
        );
    }

    #[test]
    fn ids_are_unique_and_round_trip() {
        let mut ids: Vec<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), Rule::ALL.len());
        for r in Rule::ALL {
            assert_eq!(Rule::from_id(r.id()), Some(*r));
        }
        assert_eq!(Rule::FlatbufferIndex.legacy_id(), "flatbuffer");
        assert_eq!(Rule::ZipCrc.legacy_id(), "zip-crc");
    }
}

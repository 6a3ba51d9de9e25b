//! The zip container, read side: the central directory is walked directly and checked
//! against the `zip` crate; record bytes are sliced straight out of the mapped file
//! (stored records, i.e. all tensor data, are never copied) or inflated with a hard size
//! limit. What the records mean (`torch.jit.load`) is [`super::load`].

// Record names and storage keys are trusted to nothing but equality; Fx hashing is several
// times faster than SipHash on these short keys (a module with 5,000 buffers has 5,000).
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::path::Path;

use bytes::Bytes;
use indexmap::IndexMap;

use crate::error::{FormatError, Result, rules};

/// Extra files by name (without `extra/`).
pub type ExtraFilesMap = IndexMap<String, Bytes>;

/// Highest `version` the reader accepts, as PyTorch 2.15.
pub const MAX_SUPPORTED_VERSION: u64 = 10;
/// Lowest accepted `version`.
pub const MIN_SUPPORTED_VERSION: u64 = 1;

/// The default of [`max_record_bytes`]: 256 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 256 << 20;

// The memory budget for records held whole (issue 19).
//
// Stored records (all tensor data PyTorch writes, and its extra files) are slices of the
// memory map and cost nothing, so they are never budgeted. What is budgeted is what
// ptconform must allocate for one record: a deflated record is inflated into a buffer of
// its declared size, and a `code/` file (stored or not) is parsed, which costs a multiple
// of its size. Deflate bombs inside the 1,032:1 ceiling (a 3 GB extra file from 2.9 MB, a
// 1 GB code file from 1 MB) used to grow one buffer to 2-5 GB of RSS, abort the process or
// be misreported as a corrupt stream when the allocation failed.
//
// The budget is per record, not per run: a module is many small records, and the one that
// costs memory is always one big record. 256 MiB is far above any code or pickle record
// PyTorch writes (every file in corpus/ passes) and far below what the bombs ask for; a
// user who has a legitimately larger deflated record (only other writers deflate) raises
// it with `--max-record-bytes`, i.e. the budget is what the user asked for. PyTorch itself
// has no budget: `PyTorchStreamReader::getRecord` (caffe2/serialize/inline_container.cc)
// allocates every record whole, so a 1 GB newline code file takes it two minutes and then
// crashes it (SIGSEGV), and a 1 GB comment loads in 24 s.
//
// A process-wide setting, like an rlimit: it is a resource limit of the process running
// ptconform, set once by the CLI, and threading it through every reader and loader
// signature would change the API of every subcommand for one number.
static MAX_RECORD_BYTES: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_MAX_RECORD_BYTES);

/// The largest record ptconform holds whole in memory when it is not a slice of the file:
/// the declared size of a deflated record, or the size of a `code/` file (rule
/// `record-budget` above it). Stored tensor data and extra files are never budgeted.
pub fn max_record_bytes() -> u64 {
    MAX_RECORD_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets [`max_record_bytes`] for the whole process (the CLI's `--max-record-bytes`).
pub fn set_max_record_bytes(bytes: u64) {
    MAX_RECORD_BYTES.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

/// Compression method of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Method 0: the bytes as they are (PyTorch stores every record this way).
    Stored,
    /// Method 8: deflate (other writers; PyTorch reads it through miniz).
    Deflated,
    /// Any other method number, which miniz cannot extract.
    Other(u16),
}

/// One central-directory entry.
#[derive(Clone, Debug)]
pub struct Record {
    /// The full entry name, prefix included.
    pub full_name: String,
    /// Where the name relative to the prefix starts in `full_name` (`None` for entries
    /// outside the prefix folder): one string per record, not two.
    name_start: Option<usize>,
    /// The stored name is not UTF-8: `full_name` shows it with U+FFFD in place of the
    /// bad bytes, so it is not the name itself.
    lossy_name: bool,
    /// File offset of the entry's local header.
    pub header_offset: u64,
    /// File offset of the entry's data (after the local header, its name and extra field).
    pub data_offset: u64,
    /// Bytes of data in the file (zip64 values when the directory has them).
    pub compressed_size: u64,
    /// Bytes once inflated (equal to `compressed_size` for stored records).
    pub size: u64,
    /// CRC-32 of the inflated bytes, as the central directory gives it.
    pub crc32: u32,
    /// How the data is compressed.
    pub method: Method,
    /// General-purpose flag bits of the central-directory entry (bit 3: data
    /// descriptor; 0, 5, 6: encryption and patch data, refused).
    pub flags: u16,
    /// "Version needed to extract" as stored in the directory entry.
    pub version_needed: u16,
}

impl Record {
    /// The name relative to the prefix, or `None` for entries outside the prefix folder.
    pub fn name(&self) -> Option<&str> {
        self.name_start.map(|start| &self.full_name[start..])
    }

    /// False when the stored name is not UTF-8 ([`full_name`](Self::full_name) then
    /// shows it with U+FFFD for the bad bytes: not the name itself).
    pub fn name_is_utf8(&self) -> bool {
        !self.lossy_name
    }

    /// The finding when `data` (this record's bytes, inflated) does not have the CRC-32
    /// the central directory gives.
    pub fn crc_mismatch(&self, data: &[u8]) -> Option<FormatError> {
        let crc = crc32(data);
        (crc != self.crc32).then(|| {
            FormatError::new(
                rules::ZIP_CRC,
                self.full_name.clone(),
                Some(self.data_offset),
                format!(
                    "CRC-32 is {crc:08x} but the directory says {:08x}",
                    self.crc32
                ),
            )
        })
    }
}

/// CRC-32 of `data`. From 8 MiB on, pieces are hashed on the pool (`parallel` feature) and their CRCs
/// combined: `check` must hash every byte of a large archive, and one core's CRC-32 was
/// three quarters of checking a 256 MiB one.
pub fn crc32(data: &[u8]) -> u32 {
    const PIECE: usize = 4 << 20;
    if !cfg!(feature = "parallel") || data.len() < 2 * PIECE {
        return crc32fast::hash(data);
    }
    let hash = |piece: &[u8]| {
        let mut h = crc32fast::Hasher::new();
        h.update(piece);
        h
    };
    let combine = |mut a: crc32fast::Hasher, b: crc32fast::Hasher| {
        a.combine(&b);
        a
    };
    crate::parallel::map_pieces(data, PIECE, hash, combine).map_or(0, |h| h.finalize())
}

/// An opened archive: the bytes (a memory map or a caller's buffer) and its records.
pub struct ZipArchiveReader {
    bytes: Bytes,
    prefix: String,
    pub(super) records: Vec<Record>,
    /// Indices into `records` by name (no second copy of each name).
    by_name: hashbrown::HashTable<usize>,
    /// Whether the `zip` crate has confirmed the directory walk (`validate`).
    pub(super) validated: bool,
    /// Whether two records share a name (after lossy UTF-8 decoding): `validate` then
    /// looks for a really repeated one, which miniz and the crate read differently.
    pub(super) repeated_name: bool,
    /// Deflated records already inflated, by record index: `check` reads every record
    /// and the load then reads the code and pickles again (inflating twice was a fifth
    /// of a fuzz execution). Bounded by [`INFLATED_CACHE_BYTES`], so overlapping entries
    /// naming one record cannot multiply memory.
    inflated: Box<[std::sync::OnceLock<Bytes>]>,
    inflated_bytes: std::sync::atomic::AtomicU64,
}

/// At most this many inflated bytes are kept per archive ([`ZipArchiveReader::read_record`]);
/// records beyond it are inflated again when read again.
pub const INFLATED_CACHE_BYTES: u64 = 64 << 20;
/// Larger records are never kept (code files are far smaller).
const INFLATED_CACHE_RECORD_MAX: u64 = 8 << 20;

/// Where a record's bytes end: its data's end (a data descriptor after it is not counted).
fn record_end(r: &Record) -> u64 {
    r.data_offset.saturating_add(r.compressed_size)
}

fn name_hash(name: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(name)
}

fn zip_err(message: impl Into<String>) -> FormatError {
    FormatError::new(rules::ZIP_STRUCTURE, "", None, message)
}

impl ZipArchiveReader {
    /// Maps the file read-only; tensor storages will borrow from the mapping.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::file_map::map_file(path)?;
        Ok(Self::from_bytes(bytes)?)
    }

    /// Reads an archive held in memory; storages borrow from `bytes`.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Result<Self, FormatError> {
        let mut reader = Self::from_bytes_unvalidated(bytes)?;
        reader.validate()?;
        reader.validated = true;
        Ok(reader)
    }

    /// Reads the central directory with ptconform's own walk only; [`Self::validate`]
    /// must pass before anything read from the archive is trusted. `jit::load` validates
    /// on a second thread while the pickles are read.
    pub(crate) fn from_bytes_unvalidated(bytes: impl Into<Bytes>) -> Result<Self, FormatError> {
        let bytes: Bytes = bytes.into();
        if bytes.starts_with(b"PYTORCH1") {
            return Err(FormatError::new(
                rules::LEGACY_FORMAT,
                "",
                Some(0),
                "the PYTORCH1 preview format is not supported (PyTorch refuses it too)",
            ));
        }
        let walked = match end_records(&bytes)? {
            Some(dir) => walk_directory(&bytes, &dir),
            None => Err(zip_err("no end-of-central-directory record")),
        };
        let (prefix, records) = match walked {
            Ok(r) => r,
            // Where the `zip` crate also fails, its message (the one ptconform has always
            // given) wins; otherwise the walk's.
            Err(e) => return Err(zip_crate_records(&bytes).err().unwrap_or(e)),
        };
        let mut by_name = hashbrown::HashTable::with_capacity(records.len());
        let mut repeated_name = false;
        // Names outside the prefix folder (rare) are only checked for repeats.
        let mut outside = HashSet::default();
        for (i, r) in records.iter().enumerate() {
            if let Some(n) = r.name() {
                let hash = name_hash(n);
                let same = |&j: &usize| records[j].name() == Some(n);
                if by_name.find(hash, same).is_none() {
                    by_name.insert_unique(hash, i, |&j| {
                        name_hash(records[j].name().unwrap_or_default())
                    });
                } else {
                    repeated_name = true;
                }
            } else if !outside.insert(r.full_name.as_str()) {
                repeated_name = true;
            }
        }
        let inflated = (0..records.len()).map(|_| Default::default()).collect();
        Ok(ZipArchiveReader {
            bytes,
            prefix,
            records,
            by_name,
            repeated_name,
            validated: false,
            inflated,
            inflated_bytes: Default::default(),
        })
    }

    /// Reads the directory again with the `zip` crate and requires it to agree with the
    /// walk, entry by entry: an archive two readers see differently is refused, and
    /// whatever the crate rejects stays rejected.
    pub(crate) fn validate(&self) -> Result<(), FormatError> {
        self.validate_with(None)
    }

    /// `validate`, with the crate's parse of the directory made (or being made) early.
    pub(super) fn validate_with(
        &self,
        early: Option<&std::sync::OnceLock<CrateDirectory>>,
    ) -> Result<(), FormatError> {
        // The crate's own errors come first, then a count mismatch, then the first entry
        // read differently.
        if self.repeated_name
            && let Some(dir) = end_records(&self.bytes)?
        {
            // Refuses a name that is really repeated (not just after lossy decoding).
            directory_entries(&self.bytes, &dir)?;
        }
        let mut first_difference = None;
        let labels = Labels::Records(&self.records);
        let opened = early.map(|cell| cell.get_or_init(|| open_with_crate(&self.bytes)));
        let count = zip_crate_entries(&self.bytes, labels, opened, &mut |i, theirs| {
            if first_difference.is_some() {
                return;
            }
            let Some(ours) = self.records.get(i) else {
                return;
            };
            let same_method = match (ours.method, theirs.method) {
                (Method::Other(_), Method::Other(_)) => true,
                (a, b) => a == b,
            };
            let same_name = match std::str::from_utf8(theirs.raw_name) {
                Ok(name) => name == ours.full_name,
                Err(_) => String::from_utf8_lossy(theirs.raw_name) == ours.full_name,
            };
            let agree = same_name
                && ours.header_offset == theirs.header_offset
                && ours.data_offset == theirs.data_offset
                && ours.compressed_size == theirs.compressed_size
                && ours.size == theirs.size
                && ours.crc32 == theirs.crc32
                && ours.flags == theirs.flags
                && same_method;
            if !agree {
                first_difference = Some(FormatError::new(
                    rules::ZIP_STRUCTURE,
                    ours.full_name.clone(),
                    Some(ours.header_offset),
                    format!(
                        "the zip crate reads this entry differently ({theirs:?}) from the directory walk ({ours:?})"
                    ),
                ));
            }
        })?;
        if count != self.records.len() {
            return Err(zip_err(format!(
                "the zip crate reads {count} central-directory entries, the directory walk {}",
                self.records.len()
            )));
        }
        first_difference.map_or(Ok(()), Err)
    }

    /// What both readers accept but the directory's layout makes suspect, for `check`:
    ///
    /// * `zip-overlap`: two entries whose records (local header, name, extra field and
    ///   data) share bytes: many entries naming one record, or an entry pointing inside
    ///   another record's data. Each entry then costs its whole size to extract, however
    ///   small the file ([`Self::overlapping_records`]);
    /// * `zip-local-name`: a local header whose name differs from its central-directory
    ///   entry's (a reader that walks local headers sees other names).
    ///
    /// PyTorch 2.15 loads such files: miniz reads each entry where the central directory
    /// points, under the directory's name, and never compares the two.
    pub fn layout_findings(&self) -> Vec<FormatError> {
        let mut out: Vec<FormatError> = self.overlap_finding().into_iter().collect();
        let b = &self.bytes[..];
        for r in &self.records {
            // The walk found a local header of at least 30 bytes at `header_offset`.
            let h = r.header_offset as usize;
            let n = u16::from_le_bytes([b[h + 26], b[h + 27]]) as usize;
            let local = b.get(h + 30..h + 30 + n).unwrap_or_default();
            let same = match std::str::from_utf8(local) {
                Ok(name) => name == r.full_name,
                Err(_) => String::from_utf8_lossy(local) == r.full_name,
            };
            if !same {
                out.push(FormatError::new(
                    rules::ZIP_LOCAL_NAME,
                    r.full_name.clone(),
                    Some(r.header_offset),
                    format!(
                        "the local header names the record {:?}, the central directory {:?} (PyTorch 2.15 loads the file under the directory's name)",
                        String::from_utf8_lossy(local),
                        r.full_name
                    ),
                ));
                break;
            }
        }
        out
    }

    /// The `zip-overlap` finding, if two entries' records share bytes. `check` reports
    /// it; `extra --out-dir` and `roundtrip` refuse such a file, as what they would write
    /// grows with the number of entries times the record's size, not with the file.
    pub fn overlap_finding(&self) -> Option<FormatError> {
        let (a, b) = self.overlapping_records()?;
        let (a, b) = (&self.records[a], &self.records[b]);
        Some(FormatError::new(
            rules::ZIP_OVERLAP,
            b.full_name.clone(),
            Some(b.header_offset),
            format!(
                "the record at offset {} overlaps {:?} (bytes {}..{}): entries share data, so extracting them writes more than the file holds (PyTorch 2.15 loads the file: miniz reads each entry where the directory points)",
                b.header_offset,
                a.full_name,
                a.header_offset,
                record_end(a)
            ),
        ))
    }

    /// The first two entries (by position in [`Self::records`]) whose records share
    /// bytes, if any: the second starts before the first one's data ends.
    pub fn overlapping_records(&self) -> Option<(usize, usize)> {
        let mut order: Vec<usize> = (0..self.records.len()).collect();
        order.sort_by_key(|&i| (self.records[i].header_offset, i));
        order.windows(2).find_map(|w| {
            let (a, b) = (&self.records[w[0]], &self.records[w[1]]);
            (b.header_offset < record_end(a)).then_some((w[0], w[1]))
        })
    }

    /// The archive's top-level folder (`archive`, or the name the writer chose), without
    /// the slash.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every central-directory entry, in directory order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The whole file (a memory map or the caller's buffer).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The position in [`Self::records`] of the record named `name` (relative to the prefix).
    pub fn record_index(&self, name: &str) -> Option<usize> {
        let same = |&i: &usize| self.records[i].name() == Some(name);
        self.by_name.find(name_hash(name), same).copied()
    }

    /// Looks a record up by its name relative to the prefix.
    pub fn record(&self, name: &str) -> Option<&Record> {
        self.record_index(name).map(|i| &self.records[i])
    }

    /// Whether a record of that name (relative to the prefix) exists.
    pub fn has_record(&self, name: &str) -> bool {
        self.record(name).is_some()
    }

    /// Names (relative to the prefix) of all records under the prefix, in order.
    pub fn record_names(&self) -> impl Iterator<Item = &str> {
        self.records.iter().filter_map(Record::name)
    }

    /// The stored bytes of a record (still compressed for deflated records).
    pub fn raw_data(&self, rec: &Record) -> Result<Bytes, FormatError> {
        let end = rec.data_offset.checked_add(rec.compressed_size);
        match end {
            Some(end) if end <= self.bytes.len() as u64 => {
                Ok(self.bytes.slice(rec.data_offset as usize..end as usize))
            }
            _ => Err(FormatError::new(
                rules::RECORD_SIZE,
                rec.full_name.clone(),
                Some(rec.data_offset),
                format!(
                    "record data ({} bytes at offset {}) extends past the end of the file ({} bytes)",
                    rec.compressed_size,
                    rec.data_offset,
                    self.bytes.len()
                ),
            )),
        }
    }

    /// The `record-budget` finding when `rec` would have to be held whole in memory and
    /// is larger than [`max_record_bytes`] (see there): a deflated record, or a `code/`
    /// file however stored. `None` for records within the budget and for stored records
    /// that are only sliced out of the file.
    pub fn over_budget(&self, rec: &Record) -> Option<FormatError> {
        let budget = max_record_bytes();
        let code = rec.name().is_some_and(|n| n.starts_with("code/"));
        let held = rec.method == Method::Deflated || code;
        (held && rec.size > budget).then(|| {
            let what = if rec.method == Method::Deflated {
                format!(
                    "inflates to {} bytes (from {})",
                    rec.size, rec.compressed_size
                )
            } else {
                format!("is {} bytes of code", rec.size)
            };
            FormatError::new(
                rules::RECORD_BUDGET,
                rec.full_name.clone(),
                Some(rec.header_offset),
                format!(
                    "record {what}, over the {budget}-byte budget for records held in memory \
                     (--max-record-bytes); PyTorch's getRecord would allocate all of it{}",
                    if code {
                        " and then parse it (a 1 GB code file of newlines crashes PyTorch 2.15)"
                    } else {
                        ""
                    }
                ),
            )
        })
    }

    /// A record's uncompressed bytes. Stored records are a zero-copy slice; deflated ones
    /// are inflated to exactly their declared size (never more), into a buffer allocated
    /// once with `try_reserve`: over [`max_record_bytes`], or when the allocation fails,
    /// the finding is `record-budget` naming the record and its size, never an abort.
    /// Inflated records of up to 8 MiB are kept ([`INFLATED_CACHE_BYTES`] in all), so a
    /// second read of one costs at most its CRC.
    pub fn read_record(&self, rec: &Record, verify_crc: bool) -> Result<Bytes, FormatError> {
        if rec.flags & FLAGS_UNSUPPORTED != 0 {
            // miniz's `mz_zip_reader_is_file_supported`: PyTorch cannot extract it.
            return Err(FormatError::new(
                rules::ZIP_COMPRESSION,
                rec.full_name.clone(),
                Some(rec.header_offset),
                format!(
                    "general-purpose flags 0x{:04x}: encrypted or patch data, which PyTorch's miniz does not extract",
                    rec.flags
                ),
            ));
        }
        let raw = self.raw_data(rec)?;
        let data = match rec.method {
            Method::Stored => {
                if let Some(e) = self.over_budget(rec) {
                    return Err(e);
                }
                if rec.size != rec.compressed_size {
                    return Err(FormatError::new(
                        rules::RECORD_SIZE,
                        rec.full_name.clone(),
                        Some(rec.header_offset),
                        format!(
                            "stored record has compressed size {} but size {}",
                            rec.compressed_size, rec.size
                        ),
                    ));
                }
                raw
            }
            Method::Deflated => {
                // Deflate cannot expand more than ~1032:1, so a larger declared size is a lie
                // and is not trusted for allocation.
                let ceiling = rec.compressed_size.saturating_mul(1032).saturating_add(64);
                if rec.size > ceiling {
                    return Err(FormatError::new(
                        rules::RECORD_SIZE,
                        rec.full_name.clone(),
                        Some(rec.header_offset),
                        format!(
                            "declared size {} is impossible for {} compressed bytes",
                            rec.size, rec.compressed_size
                        ),
                    ));
                }
                if let Some(e) = self.over_budget(rec) {
                    return Err(e);
                }
                let cache = self.inflated_slot(rec);
                if let Some(data) = cache.and_then(|c| c.get()) {
                    if verify_crc && let Some(e) = rec.crc_mismatch(data) {
                        return Err(e);
                    }
                    return Ok(data.clone());
                }
                let mut out = Vec::new();
                // One allocation of the declared size (+1 to notice a longer stream):
                // `read_to_end` then never grows it, and an allocation the system refuses
                // is reported as what it is, not as a corrupt stream.
                out.try_reserve_exact(rec.size as usize + 1).map_err(|e| {
                    FormatError::new(
                        rules::RECORD_BUDGET,
                        rec.full_name.clone(),
                        Some(rec.header_offset),
                        format!(
                            "cannot allocate {} bytes to inflate this record (declared size {}): {e}",
                            rec.size + 1,
                            rec.size
                        ),
                    )
                })?;
                inflate_into(&raw, &mut out).map_err(|e| {
                    FormatError::new(
                        rules::ZIP_COMPRESSION,
                        rec.full_name.clone(),
                        Some(rec.data_offset),
                        format!("deflate stream is corrupt: {e}"),
                    )
                })?;
                if out.len() as u64 != rec.size {
                    return Err(FormatError::new(
                        rules::RECORD_SIZE,
                        rec.full_name.clone(),
                        Some(rec.data_offset),
                        format!(
                            "inflated to {}{} bytes but the directory says {}{}",
                            out.len().min(rec.size as usize),
                            if out.len() as u64 > rec.size { "+" } else { "" },
                            rec.size,
                            if out.len() as u64 > rec.size {
                                " (PyTorch 2.15 loads a record that inflates past its declared size)"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
                let data = Bytes::from(out);
                if let Some(slot) = cache {
                    self.keep_inflated(slot, &data);
                }
                data
            }
            Method::Other(m) => {
                return Err(FormatError::new(
                    rules::ZIP_COMPRESSION,
                    rec.full_name.clone(),
                    Some(rec.header_offset),
                    format!("compression method {m} is not supported (only stored and deflate)"),
                ));
            }
        };
        if verify_crc && let Some(e) = rec.crc_mismatch(&data) {
            return Err(e);
        }
        Ok(data)
    }

    /// The cache slot of `rec` if it is one of this archive's records and small enough
    /// to keep.
    fn inflated_slot(&self, rec: &Record) -> Option<&std::sync::OnceLock<Bytes>> {
        if rec.size > INFLATED_CACHE_RECORD_MAX {
            return None;
        }
        let base = self.records.as_ptr() as usize;
        let offset = (rec as *const Record as usize).checked_sub(base)?;
        let index = offset / std::mem::size_of::<Record>();
        let ours = offset % std::mem::size_of::<Record>() == 0
            && self
                .records
                .get(index)
                .is_some_and(|r| std::ptr::eq(r, rec));
        if ours { self.inflated.get(index) } else { None }
    }

    /// Keeps `data` (a record's inflated bytes) in `slot` while the archive's budget lasts.
    fn keep_inflated(&self, slot: &std::sync::OnceLock<Bytes>, data: &Bytes) {
        use std::sync::atomic::Ordering;
        let len = data.len() as u64;
        let claimed =
            self.inflated_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                    (used + len <= INFLATED_CACHE_BYTES).then_some(used + len)
                });
        if claimed.is_ok() && slot.set(data.clone()).is_err() {
            // Another thread kept it first: give the claim back.
            self.inflated_bytes.fetch_sub(len, Ordering::Relaxed);
        }
    }

    /// Reads a record by relative name; `RECORD_MISSING` if absent.
    pub fn read(&self, name: &str, verify_crc: bool) -> Result<Bytes, FormatError> {
        let rec = self.record(name).ok_or_else(|| {
            self.missing_record(name, format!("required record {name:?} is missing"))
        })?;
        self.read_record(rec, verify_crc)
    }

    /// The finding for the record `name` (relative), which this archive lacks and some
    /// reader needs; `message` says which.
    pub fn missing_record(&self, name: &str, message: impl Into<String>) -> FormatError {
        FormatError::new(
            rules::RECORD_MISSING,
            format!("{}/{name}", self.prefix),
            None,
            message,
        )
    }

    /// The archive's format version: `.data/version` if present, else `version`.
    pub fn version(&self) -> Result<(u64, &'static str), FormatError> {
        let name = if self.has_record(".data/version") {
            ".data/version"
        } else {
            "version"
        };
        let data = self.read(name, false)?;
        let v = parse_version(&data).ok_or_else(|| {
            FormatError::new(
                rules::VERSION,
                name,
                Some(0),
                format!(
                    "version record is not a decimal number: {:?}",
                    String::from_utf8_lossy(&data[..data.len().min(40)])
                ),
            )
        })?;
        if !(MIN_SUPPORTED_VERSION..=MAX_SUPPORTED_VERSION).contains(&v) {
            return Err(FormatError::new(
                rules::VERSION,
                name,
                Some(0),
                format!(
                    "version {v} is not supported (PyTorch 2.15 reads {MIN_SUPPORTED_VERSION} to {MAX_SUPPORTED_VERSION})"
                ),
            ));
        }
        Ok((v, name))
    }

    /// Names of the extra files (`extra/NAME`) in record order.
    pub fn extra_file_names(&self) -> Vec<String> {
        self.record_names()
            .filter_map(|n| n.strip_prefix("extra/"))
            .map(str::to_string)
            .collect()
    }
}

/// The version record as PyTorch reads it (C++ `std::stoull`): leading white space, an
/// optional sign (`-` negates modulo 2^64), at least one digit, and anything after the
/// digits ignored; `None` when there is no digit or the number overflows. PyTorch writes
/// `3\n`; `check` reports other spellings (`version-text`).
pub fn parse_version(data: &[u8]) -> Option<u64> {
    let mut i = 0;
    while i < data.len() && matches!(data[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let negative = match data.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = data[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in &data[i..i + digits] {
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(if negative { v.wrapping_neg() } else { v })
}

/// General-purpose flag bits of records miniz will not extract: encrypted (0), compressed
/// patch data (5), strong encryption (6).
const FLAGS_UNSUPPORTED: u16 = 1 | 1 << 5 | 1 << 6;
/// General-purpose flag bit 13: the local header is masked; miniz refuses the archive.
const FLAG_LOCAL_HEADER_MASKED: u16 = 1 << 13;

/// An entry's full name and its name under the prefix; the first entry sets the prefix
/// (like PyTorch: its name up to the first '/').
fn entry_names(first: bool, raw: &[u8], prefix: &mut String) -> (String, Option<usize>, bool) {
    let (full_name, lossy_name) = match std::str::from_utf8(raw) {
        Ok(name) => (name.to_owned(), false),
        Err(_) => (String::from_utf8_lossy(raw).into_owned(), true),
    };
    if first {
        *prefix = full_name.split('/').next().unwrap_or("").to_string();
    }
    let name_start = full_name
        .strip_prefix(prefix.as_str())
        .and_then(|r| r.strip_prefix('/'))
        .map(|_| prefix.len() + 1);
    (full_name, name_start, lossy_name)
}

/// Walks the central directory straight from the bytes, as miniz does: every entry with
/// its sizes, CRC, flags and method (zip64 extra fields where a 32-bit field is
/// saturated), and the data offset from its local header (repeated names are left to
/// `validate`, which refuses them). Written by hand because the
/// `zip` crate's reader allocates several objects per entry, which dominated loading
/// archives of thousands of records; the crate still checks the result (`validate`).
fn walk_directory(b: &[u8], dir: &Directory) -> Result<(String, Vec<Record>), FormatError> {
    let bad = |at: usize, message: String| {
        FormatError::new(rules::ZIP_STRUCTURE, "", Some(at as u64), message)
    };
    let u16_at = |p: usize| u16::from_le_bytes([b[p], b[p + 1]]);
    let u32_at = |p: usize| u32::from_le_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]]);
    let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap_or_default());
    let end = dir
        .offset
        .checked_add(dir.size)
        .filter(|&e| e <= b.len() as u64)
        .ok_or_else(|| {
            bad(
                0,
                "the central directory extends past the end of the file".into(),
            )
        })? as usize;
    let capacity = (dir.entries as usize).min(dir.size as usize / 46);
    let mut records = Vec::with_capacity(capacity);
    let mut prefix = String::new();
    let mut p = dir.offset as usize;
    for i in 0..dir.entries {
        if p + 46 > end || &b[p..p + 4] != b"PK\x01\x02" {
            return Err(bad(
                p,
                format!("central directory entry {i}: bad signature"),
            ));
        }
        let (n, x, c) = (
            u16_at(p + 28) as usize,
            u16_at(p + 30) as usize,
            u16_at(p + 32) as usize,
        );
        let name_end = p + 46 + n;
        let extra_end = name_end + x;
        let next = extra_end + c;
        if next > end {
            return Err(bad(
                p,
                format!("central directory entry {i} overruns the directory"),
            ));
        }
        let raw_name = &b[p + 46..name_end];
        let flags = u16_at(p + 8);
        if flags & FLAG_LOCAL_HEADER_MASKED != 0 {
            return Err(bad(p, format!("central directory entry {i}: flag bit 13")));
        }
        let mut size = u32_at(p + 24) as u64;
        let mut compressed_size = u32_at(p + 20) as u64;
        let mut header_offset = u32_at(p + 42) as u64;
        const SATURATED: u64 = u32::MAX as u64;
        if [size, compressed_size, header_offset].contains(&SATURATED) {
            // The zip64 extra field holds, in this order, each saturated field.
            let mut q = name_end;
            while q + 4 <= extra_end {
                let (id, len) = (u16_at(q), u16_at(q + 2) as usize);
                let body_end = q + 4 + len;
                if body_end > extra_end {
                    return Err(bad(
                        q,
                        format!("central directory entry {i}: extra field overruns"),
                    ));
                }
                if id == 0x0001 {
                    let mut r = q + 4;
                    for field in [&mut size, &mut compressed_size, &mut header_offset] {
                        if *field == SATURATED {
                            if r + 8 > body_end {
                                return Err(bad(
                                    q,
                                    format!("central directory entry {i}: short zip64 field"),
                                ));
                            }
                            *field = u64_at(r);
                            r += 8;
                        }
                    }
                }
                q = body_end;
            }
        }
        let h = usize::try_from(header_offset)
            .ok()
            .filter(|h| h.checked_add(30).is_some_and(|e| e <= b.len()))
            .filter(|&h| &b[h..h + 4] == b"PK\x03\x04")
            .ok_or_else(|| bad(p, format!("central directory entry {i}: no local header")))?;
        let data_offset = header_offset + 30 + u16_at(h + 26) as u64 + u16_at(h + 28) as u64;
        let (full_name, name_start, lossy_name) = entry_names(i == 0, raw_name, &mut prefix);
        let method = match u16_at(p + 10) {
            0 => Method::Stored,
            8 => Method::Deflated,
            m => Method::Other(m),
        };
        records.push(Record {
            full_name,
            name_start,
            lossy_name,
            header_offset,
            data_offset,
            compressed_size,
            size,
            crc32: u32_at(p + 16),
            method,
            flags,
            version_needed: u16_at(p + 6),
        });
        p = next;
    }
    Ok((prefix, records))
}

/// The `zip` crate's reading of the directory (the prefix and every record).
fn zip_crate_records(bytes: &Bytes) -> Result<(String, Vec<Record>), FormatError> {
    let mut records = Vec::new();
    let mut prefix = String::new();
    zip_crate_entries(bytes, Labels::Directory, None, &mut |i, e| {
        let (full_name, name_start, lossy_name) = entry_names(i == 0, e.raw_name, &mut prefix);
        records.push(Record {
            full_name,
            name_start,
            lossy_name,
            header_offset: e.header_offset,
            data_offset: e.data_offset,
            compressed_size: e.compressed_size,
            size: e.size,
            crc32: e.crc32,
            method: e.method,
            flags: e.flags,
            version_needed: e.version_needed,
        });
    })?;
    Ok((prefix, records))
}

/// The `zip` crate's parse of the central directory: the larger half of `validate`'s
/// work, which `jit::load` starts on the pool before walking the directory itself.
pub(crate) type CrateDirectory = Result<zip::ZipArchive<std::io::Cursor<Bytes>>, FormatError>;

pub(crate) fn open_with_crate(bytes: &Bytes) -> CrateDirectory {
    // The archive starts at byte 0, as PyTorch's miniz reader assumes: the zip crate's
    // default offset detection can be misled by the bytes of stored records (found by
    // the generator: some extra-file contents made it reject a valid archive).
    let config = zip::read::Config {
        archive_offset: zip::read::ArchiveOffset::Known(0),
    };
    zip::ZipArchive::with_config(config, std::io::Cursor::new(bytes.clone()))
        .map_err(|e| zip_err(format!("not a readable zip archive: {e}")))
}

/// Whether `jit::load` should open the archive with the `zip` crate on a second thread
/// while it walks the directory (the directory is large enough for parallel validation).
pub(crate) fn worth_opening_early(bytes: &[u8]) -> bool {
    matches!(end_records(bytes), Ok(Some(dir)) if dir.entries >= PARALLEL_VALIDATION_RECORDS as u64)
}

/// Where the names in the `zip` crate's per-entry errors come from.
enum Labels<'a> {
    /// A walk of the directory (which also refuses repeated names first).
    Directory,
    /// The records of `walk_directory` (their repeated names are checked by the caller).
    Records(&'a [Record]),
}

/// One central-directory entry as the `zip` crate reads it.
struct CrateEntry<'a> {
    raw_name: &'a [u8],
    header_offset: u64,
    data_offset: u64,
    compressed_size: u64,
    size: u64,
    crc32: u32,
    method: Method,
    flags: u16,
    /// The crate reports a computed version, not the stored field (not compared).
    version_needed: u16,
}

impl std::fmt::Debug for CrateEntry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrateEntry")
            .field("name", &String::from_utf8_lossy(self.raw_name))
            .field("header_offset", &self.header_offset)
            .field("data_offset", &self.data_offset)
            .field("compressed_size", &self.compressed_size)
            .field("size", &self.size)
            .field("crc32", &self.crc32)
            .field("method", &self.method)
            .field("flags", &self.flags)
            .finish()
    }
}

/// Reads the directory with the `zip` crate, passing each entry to `visit` in order
/// (without building names: validation only compares them); returns the entry count.
fn zip_crate_entries(
    bytes: &Bytes,
    labels: Labels,
    opened: Option<&CrateDirectory>,
    visit: &mut dyn FnMut(usize, &CrateEntry),
) -> Result<usize, FormatError> {
    let entries = match labels {
        Labels::Directory => match end_records(bytes)? {
            Some(dir) => directory_entries(bytes, &dir)?,
            None => Vec::new(),
        },
        Labels::Records(_) => Vec::new(),
    };
    let mut zip = match opened {
        // (A clone shares the parsed directory.)
        Some(opened) => opened.clone()?,
        None => open_with_crate(bytes)?,
    };
    for i in 0..zip.len() {
        let f = zip.by_index_raw(i).map_err(|e| {
            // The entry's name and local-header offset, from the directory walk: same
            // directory, same order.
            let (entry_name, header) = match (&labels, entries.get(i)) {
                (Labels::Records(records), _) => match records.get(i) {
                    Some(r) => (r.full_name.clone(), Some(r.header_offset)),
                    None => (String::new(), None),
                },
                (Labels::Directory, Some(&(n, h))) => (
                    String::from_utf8_lossy(n).into_owned(),
                    (h != u32::MAX as u64).then_some(h),
                ),
                (Labels::Directory, None) => (String::new(), None),
            };
            FormatError::new(
                rules::ZIP_STRUCTURE,
                entry_name,
                header,
                format!("central directory entry {i}: {e}"),
            )
        })?;
        let full_name = || String::from_utf8_lossy(f.name_raw()).into_owned();
        if f.flags().as_u16() & FLAG_LOCAL_HEADER_MASKED != 0 {
            // miniz refuses the whole archive ("unsupported encryption").
            return Err(FormatError::new(
                rules::ZIP_STRUCTURE,
                full_name(),
                Some(f.header_start()),
                "general-purpose flag bit 13 (masked local header): PyTorch's miniz refuses the archive",
            ));
        }
        let data_offset = f.data_start().ok_or_else(|| {
            FormatError::new(
                rules::ZIP_STRUCTURE,
                full_name(),
                Some(f.header_start()),
                "local header could not be read",
            )
        })?;
        let method = match f.compression() {
            zip::CompressionMethod::Stored => Method::Stored,
            zip::CompressionMethod::Deflated => Method::Deflated,
            #[allow(deprecated)]
            zip::CompressionMethod::Unsupported(m) => Method::Other(m),
            _ => Method::Other(u16::MAX),
        };
        visit(
            i,
            &CrateEntry {
                raw_name: f.name_raw(),
                header_offset: f.header_start(),
                data_offset,
                compressed_size: f.compressed_size(),
                size: f.size(),
                crc32: f.crc32(),
                method,
                flags: f.flags().as_u16(),
                version_needed: f.version_needed(),
            },
        );
    }
    Ok(zip.len())
}

/// The central directory as PyTorch's miniz finds it: offset, size and entry count.
struct Directory {
    offset: u64,
    size: u64,
    entries: u64,
}

/// The end records as PyTorch's miniz reads them. When the locator just before the end
/// record is present, miniz takes the entry count, directory size and directory offset
/// from the zip64 end record it points at, and fails if that record is out of range or
/// its values are; the `zip` crate prefers the 32-bit end record unless its fields are
/// saturated. An archive whose two end records disagree would be read as two different
/// directories, so it is refused; so is everything miniz refuses here. `None` when there
/// is no end record (the `zip` crate reports that).
fn end_records(b: &[u8]) -> Result<Option<Directory>, FormatError> {
    const EOCD: usize = 22;
    const LOCATOR: usize = 20;
    const ZIP64_EOCD: usize = 56;
    let u16_at = |p: usize| u16::from_le_bytes([b[p], b[p + 1]]) as u64;
    let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().unwrap()) as u64;
    let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap());
    // The end record: the last signature within the comment-length window, as miniz
    // scans backwards for it.
    if b.len() < EOCD {
        return Ok(None);
    }
    let lowest = b.len().saturating_sub(EOCD + 0xffff);
    // memchr's reverse search rather than a byte-at-a-time loop: under the fuzzers'
    // comparison hooks that loop was the costliest part of opening a small archive.
    let Some(eocd) =
        memchr::memmem::rfind(&b[lowest..b.len() - EOCD + 4], b"PK\x05\x06").map(|p| lowest + p)
    else {
        return Ok(None);
    };
    let short = Directory {
        offset: u32_at(eocd + 16),
        size: u32_at(eocd + 12),
        entries: u16_at(eocd + 10),
    };
    if eocd < LOCATOR || &b[eocd - LOCATOR..eocd - LOCATOR + 4] != b"PK\x06\x07" {
        return Ok(Some(short));
    }
    let locator = eocd - LOCATOR;
    let err = |at: usize, msg: String| {
        Err(FormatError::new(
            rules::ZIP_STRUCTURE,
            "",
            Some(at as u64),
            msg,
        ))
    };
    let z = u64_at(locator + 8);
    if b.len() < ZIP64_EOCD || z > (b.len() - ZIP64_EOCD) as u64 {
        return err(
            locator,
            format!("the zip64 end-record locator points past the end of the file (offset {z})"),
        );
    }
    let z = z as usize;
    if &b[z..z + 4] != b"PK\x06\x06" {
        return err(
            locator,
            format!(
                "the zip64 end-record locator points at offset {z}, where there is no zip64 end record"
            ),
        );
    }
    let (on_disk, total, size, offset) = (
        u64_at(z + 24),
        u64_at(z + 32),
        u64_at(z + 40),
        u64_at(z + 48),
    );
    if total > u32::MAX as u64 || on_disk != total {
        return err(
            z,
            format!("zip64 end record: {total} entries ({on_disk} on this disk)"),
        );
    }
    if size > u32::MAX as u64 || offset.checked_add(size).is_none_or(|e| e > b.len() as u64) {
        return err(
            z,
            format!(
                "zip64 end record: a central directory of {size} bytes at offset {offset} does not fit the {}-byte file",
                b.len()
            ),
        );
    }
    for (what, short, saturated, long) in [
        ("entry count", short.entries, 0xffff, total),
        (
            "entry count on this disk",
            u16_at(eocd + 8),
            0xffff,
            on_disk,
        ),
        ("directory size", short.size, 0xffff_ffff, size),
        ("directory offset", short.offset, 0xffff_ffff, offset),
    ] {
        if short != saturated && short != long {
            return err(
                eocd,
                format!(
                    "the end record's {what} is {short} but the zip64 end record's is {long} (PyTorch reads the zip64 one)"
                ),
            );
        }
    }
    Ok(Some(Directory {
        offset,
        size,
        entries: total,
    }))
}

/// Walks the central directory: each entry's name and 32-bit local-header offset. The
/// `zip` crate keeps one entry per name (the last), while miniz keeps all and finds one
/// of them by binary search over a non-stable sort, so a repeated name is refused here.
/// Stops quietly where the directory is malformed (the `zip` crate reports that).
fn directory_entries<'b>(
    b: &'b [u8],
    dir: &Directory,
) -> Result<Vec<(&'b [u8], u64)>, FormatError> {
    // Sized up front (an entry takes at least 46 bytes of the directory).
    let capacity = (dir.entries as usize).min(b.len() / 46);
    let mut out: Vec<(&[u8], u64)> = Vec::with_capacity(capacity);
    let mut seen: HashMap<&[u8], ()> =
        HashMap::with_capacity_and_hasher(capacity, Default::default());
    let Some(end) = dir
        .offset
        .checked_add(dir.size)
        .filter(|&e| e <= b.len() as u64)
    else {
        return Ok(out);
    };
    let (mut p, end) = (dir.offset as usize, end as usize);
    while out.len() < dir.entries as usize && p + 46 <= end && &b[p..p + 4] == b"PK\x01\x02" {
        let len = |o: usize| u16::from_le_bytes([b[p + o], b[p + o + 1]]) as usize;
        let (n, x, c) = (len(28), len(30), len(32));
        if p + 46 + n > end {
            break;
        }
        let name = &b[p + 46..p + 46 + n];
        let header = u32::from_le_bytes(b[p + 42..p + 46].try_into().unwrap()) as u64;
        if seen.insert(name, ()).is_some() {
            return Err(FormatError::new(
                rules::ZIP_STRUCTURE,
                String::from_utf8_lossy(name),
                Some(p as u64),
                "a second central-directory entry of this name (which one PyTorch reads \
                 depends on miniz's sort)",
            ));
        }
        out.push((name, header));
        p += 46 + n + x + c;
    }
    Ok(out)
}

thread_local! {
    /// One inflater per thread, reset for each record: a fresh one allocates and clears
    /// about 40 KiB of window and tables, a quarter of the cost of loading a small archive
    /// (the fuzz targets load thousands a second).
    static INFLATER: std::cell::RefCell<Option<flate2::Decompress>> =
        const { std::cell::RefCell::new(None) };
}

/// Inflates the raw deflate stream `raw` into `out`, at most up to `out`'s capacity (the
/// caller reserves the declared size + 1, so a longer stream shows as one byte too
/// many). A stream that ends early leaves `out` short; the caller compares sizes.
fn inflate_into(raw: &[u8], out: &mut Vec<u8>) -> Result<(), flate2::DecompressError> {
    INFLATER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = slot.get_or_insert_with(|| flate2::Decompress::new(false));
        d.reset(false);
        loop {
            let (read, written) = (d.total_in(), out.len());
            let status =
                d.decompress_vec(&raw[read as usize..], out, flate2::FlushDecompress::Finish)?;
            let stuck = d.total_in() == read && out.len() == written;
            if status == flate2::Status::StreamEnd || stuck || out.len() == out.capacity() {
                return Ok(());
            }
        }
    })
}

/// Directories of this many entries or more are validated on a second thread (`load_archive`).
pub(super) const PARALLEL_VALIDATION_RECORDS: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Device, IValue};
    use std::sync::Arc;

    /// Archives written by this crate's saver, small (validated serially) and large
    /// (validated in parallel). The same walks over PyTorch's own archives are in
    /// `tests/formats/load_api.rs`, which reads the corpus.
    fn sample_zips() -> Vec<(String, Bytes)> {
        vec![
            ("3 buffers".to_string(), many_records(3)),
            (
                "parallel validation".to_string(),
                many_records(PARALLEL_VALIDATION_RECORDS + 10),
            ),
        ]
    }

    #[test]
    fn the_directory_walk_agrees_with_the_zip_crate() {
        for (name, bytes) in sample_zips() {
            let reader = ZipArchiveReader::from_bytes_unvalidated(bytes.clone()).unwrap();
            let (prefix, theirs) = zip_crate_records(&bytes).unwrap();
            assert_eq!(reader.prefix, prefix, "{name}");
            assert_eq!(reader.records.len(), theirs.len(), "{name}");
            reader.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn validation_refuses_a_walk_that_differs_from_the_zip_crate() {
        let (_, bytes) = sample_zips().remove(0);
        for field in 0..5 {
            let mut reader = ZipArchiveReader::from_bytes_unvalidated(bytes.clone()).unwrap();
            let r = reader.records.last_mut().unwrap();
            match field {
                0 => r.crc32 ^= 1,
                1 => r.size += 1,
                2 => r.data_offset += 1,
                3 => r.full_name.push('x'),
                _ => {
                    reader.records.pop();
                }
            }
            let e = reader.validate().unwrap_err();
            assert_eq!(e.rule, rules::ZIP_STRUCTURE, "field {field}: {e}");
        }
    }

    /// An archive of `n` one-element buffers (n + 6 records).
    fn many_records(n: usize) -> Bytes {
        use crate::model::compose::ModuleBuilder;
        use crate::model::{ScalarType, Tensor};
        let mut b = ModuleBuilder::new("__torch__.M");
        for i in 0..n {
            let t = Tensor::contiguous(
                ScalarType::Float32,
                Device::cpu(),
                vec![1],
                Bytes::from(vec![i as u8; 4]),
                false,
            );
            b.buffer(&format!("b{i}"), IValue::Tensor(Arc::new(t)));
        }
        let m = b.build();
        let opts = crate::zip_archive::save::SaveOptions::default();
        crate::zip_archive::save::save_to_buffer(&m, &ExtraFilesMap::new(), &opts).unwrap()
    }

    #[test]
    fn a_kept_inflated_record_is_still_crc_checked() {
        // Enough buffers for the code file to be deflated.
        let bytes = many_records(100);
        let mut reader = ZipArchiveReader::from_bytes(bytes).unwrap();
        let i = reader
            .records
            .iter()
            .position(|r| r.method == Method::Deflated)
            .expect("the saver deflates a large code file");
        reader.records[i].crc32 ^= 1;
        let rec = &reader.records[i];
        let first = reader.read_record(rec, false).unwrap();
        let kept = reader
            .inflated_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(kept, first.len() as u64);
        // The second read is the kept copy, and a CRC check still runs on it.
        assert_eq!(reader.read_record(rec, false).unwrap(), first);
        let e = reader.read_record(rec, true).unwrap_err();
        assert_eq!(e.rule, rules::ZIP_CRC, "{e}");
        assert_eq!(
            reader
                .inflated_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
            kept
        );
        // A record that is not this archive's is read, never kept.
        let foreign = rec.clone();
        assert_eq!(reader.read_record(&foreign, false).unwrap(), first);
        assert!(reader.inflated_slot(&foreign).is_none());
    }

    #[test]
    fn jit_load_reports_what_from_bytes_reports() {
        // A corrupted central directory: the unvalidated path must fail exactly as the
        // validated one (the zip crate's message wins where it also fails), serially
        // validated (a small directory) and in parallel (a large one).
        for (_, bytes) in sample_zips() {
            check_damaged_directories(&bytes);
        }
    }

    fn check_damaged_directories(bytes: &Bytes) {
        let eocd = bytes.windows(4).rposition(|w| w == b"PK\x05\x06").unwrap();
        let cd = u32::from_le_bytes(bytes[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
        let mut refused = 0;
        for at in [cd, cd + 1, cd + 20, cd + 28, cd + 42] {
            let mut damaged = bytes.to_vec();
            damaged[at] ^= 0x5a;
            let damaged = Bytes::from(damaged);
            let direct = ZipArchiveReader::from_bytes(damaged.clone()).map(|_| ());
            let loaded = crate::jit::load_from_buffer(damaged, None, None).map(|_| ());
            match (direct, loaded) {
                (Err(a), Err(crate::Error::Format(b))) => {
                    assert_eq!(a, b, "byte {at}");
                    refused += 1;
                }
                (Ok(()), _) => {}
                (Err(a), other) => {
                    panic!("byte {at}: from_bytes failed ({a}) but load gave {other:?}")
                }
            }
        }
        // The signature bytes at least must be refused.
        assert!(refused >= 2, "only {refused} damaged directories refused");
    }
}

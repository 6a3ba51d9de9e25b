//! The byte-exact TorchScript zip container writer (spec/zip-archive.md §3, §5, §6).
//!
//! PyTorch writes its archives through miniz with a handful of fixed conventions (zeroed
//! local-header fields, a `FB` padding field that 64-byte-aligns every record's data, data
//! descriptors, zip64 end records always present). No general zip writer produces those
//! bytes, so this module lays out every structure itself.
//!
//! The `.data/serialization_id` needs two libstdc++ models: `std::hash<std::string>`
//! ([`std_hash_bytes`]) and the iteration order of `std::unordered_set`/`unordered_map`
//! ([`StdHashtable`]), which also decides the order of `extra/` records
//! ([`extra_files_write_order`]).

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::path::Path;

use miniz_oxide::deflate::core::{
    CompressorOxide, TDEFLFlush, TDEFLStatus, compress_to_output, create_comp_flags_from_zip_params,
};

thread_local! {
    /// The level-9 raw-deflate compressor `write_deflated` reuses (taken while in use).
    static DEFLATER: std::cell::RefCell<Option<Box<CompressorOxide>>> =
        const { std::cell::RefCell::new(None) };
}

/// Sizes and offsets from this value on need zip64 fields (miniz compares with `>=`).
pub const ZIP64_THRESHOLD: u64 = 0xFFFF_FFFF;
/// Record data starts at a multiple of this.
pub const DATA_ALIGNMENT: u64 = 64;
/// PyTorch deflates `code/` sources and debug tables only above this many bytes.
pub const COMPRESSION_THRESHOLD: usize = 200;
/// The record `finish` appends; writes of it by the caller are ignored, as in PyTorch.
pub const SERIALIZATION_ID_RECORD: &str = ".data/serialization_id";

const LFH_SIGNATURE: [u8; 4] = *b"PK\x03\x04";
const DESCRIPTOR_SIGNATURE: [u8; 4] = *b"PK\x07\x08";
const CDH_SIGNATURE: [u8; 4] = *b"PK\x01\x02";
const ZIP64_EOCD_SIGNATURE: [u8; 4] = *b"PK\x06\x06";
const ZIP64_LOCATOR_SIGNATURE: [u8; 4] = *b"PK\x06\x07";
const EOCD_SIGNATURE: [u8; 4] = *b"PK\x05\x06";
const LFH_SIZE: u64 = 30;
const PADDING_HEADER_ID: u16 = 0x4246; // "FB"
const ZIP64_HEADER_ID: u16 = 0x0001;
const FLAG_DESCRIPTOR: u16 = 0x0008;
const FLAG_UTF8: u16 = 0x0800;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATE: u16 = 8;
/// Piece size for hashing and writing stored data in one pass: small enough to stay in
/// cache between the two, and at least the output buffer's capacity, so `BufWriter`
/// passes pieces straight through instead of copying them.
const HASH_PIECE: usize = 1 << 20;
/// Stored records from this size on are checksummed on a second thread while written.
const PARALLEL_CRC_BYTES: usize = 2 << 20;
/// Streaming copy buffer for `write_record_from_reader`.
const COPY_BUFFER: usize = 1 << 20;

// ---------------------------------------------------------------------------------------
// libstdc++ models
// ---------------------------------------------------------------------------------------

const HASH_MUL: u64 = 0xC6A4_A793_5BD1_E995;
const HASH_SEED: u64 = 0xC70F_6907;

fn shift_mix(v: u64) -> u64 {
    v ^ (v >> 47)
}

/// libstdc++'s `std::hash<std::string>` on 64-bit Linux: `_Hash_bytes(data, len,
/// 0xC70F6907)`, a MurmurHash2-64 variant (spec §6).
pub fn std_hash_bytes(data: &[u8]) -> u64 {
    let mut h = HASH_SEED ^ (data.len() as u64).wrapping_mul(HASH_MUL);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let d = u64::from_le_bytes(w.try_into().expect("8-byte chunk"));
        h ^= shift_mix(d.wrapping_mul(HASH_MUL)).wrapping_mul(HASH_MUL);
        h = h.wrapping_mul(HASH_MUL);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut t = [0u8; 8];
        t[..tail.len()].copy_from_slice(tail);
        h ^= u64::from_le_bytes(t);
        h = h.wrapping_mul(HASH_MUL);
    }
    shift_mix(shift_mix(h).wrapping_mul(HASH_MUL))
}

/// `c10::hash_combine` on 64-bit values (spec §6).
pub fn hash_combine(seed: u64, value: u64) -> u64 {
    seed ^ value
        .wrapping_add(0x9E37_79B9)
        .wrapping_add(seed << 6)
        .wrapping_add(seed >> 2)
}

/// Bucket counts for small requests (libstdc++ answers these without the prime table).
const FAST_BUCKETS: [u64; 14] = [2, 2, 2, 3, 5, 5, 7, 7, 11, 11, 11, 11, 13, 13];

/// libstdc++'s prime table for bucket counts (64-bit `unsigned long`), from 17 up; the
/// last entry is the table's end sentinel, never returned by a lookup.
#[rustfmt::skip]
const PRIMES: &[u64] = &[
    17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 103, 109, 113,
    127, 137, 139, 149, 157, 167, 179, 193, 199, 211, 227, 241, 257, 277, 293, 313, 337, 359,
    383, 409, 439, 467, 503, 541, 577, 619, 661, 709, 761, 823, 887, 953, 1031, 1109, 1193,
    1289, 1381, 1493, 1613, 1741, 1879, 2029, 2179, 2357, 2549, 2753, 2971, 3209, 3469, 3739,
    4027, 4349, 4703, 5087, 5503, 5953, 6427, 6949, 7517, 8123, 8783, 9497, 10273, 11113, 12011,
    12983, 14033, 15173, 16411, 17749, 19183, 20753, 22447, 24281, 26267, 28411, 30727, 33223,
    35933, 38873, 42043, 45481, 49201, 53201, 57557, 62233, 67307, 72817, 78779, 85229, 92203,
    99733, 107897, 116731, 126271, 136607, 147793, 159871, 172933, 187091, 202409, 218971,
    236897, 256279, 277261, 299951, 324503, 351061, 379787, 410857, 444487, 480881, 520241,
    562841, 608903, 658753, 712697, 771049, 834181, 902483, 976369, 1056323, 1142821, 1236397,
    1337629, 1447153, 1565659, 1693859, 1832561, 1982627, 2144977, 2320627, 2510653, 2716249,
    2938679, 3179303, 3439651, 3721303, 4026031, 4355707, 4712381, 5098259, 5515729, 5967347,
    6456007, 6984629, 7556579, 8175383, 8844859, 9569143, 10352717, 11200489, 12117689,
    13109983, 14183539, 15345007, 16601593, 17961079, 19431899, 21023161, 22744717, 24607243,
    26622317, 28802401, 31160981, 33712729, 36473443, 39460231, 42691603, 46187573, 49969847,
    54061849, 58488943, 63278561, 68460391, 74066549, 80131819, 86693767, 93793069, 101473717,
    109783337, 118773397, 128499677, 139022417, 150406843, 162723577, 176048909, 190465427,
    206062531, 222936881, 241193053, 260944219, 282312799, 305431229, 330442829, 357502601,
    386778277, 418451333, 452718089, 489790921, 529899637, 573292817, 620239453, 671030513,
    725980837, 785430967, 849749479, 919334987, 994618837, 1076067617, 1164186217, 1259520799,
    1362662261, 1474249943, 1594975441, 1725587117, 1866894511, 2019773507, 2185171673,
    2364114217, 2557710269, 2767159799, 2993761039, 3238918481, 3504151727, 3791104843,
    4101556399, 4294967291, 6442450933, 8589934583, 12884901857, 17179869143, 25769803693,
    34359738337, 51539607367, 68719476731, 103079215087, 137438953447, 206158430123,
    274877906899, 412316860387, 549755813881, 824633720731, 1099511627689, 1649267441579,
    2199023255531, 3298534883309, 4398046511093, 6597069766607, 8796093022151, 13194139533241,
    17592186044399, 26388279066581, 35184372088777, 52776558133177, 70368744177643,
    105553116266399, 140737488355213, 211106232532861, 281474976710597, 562949953421231,
    1125899906842597, 2251799813685119, 4503599627370449, 9007199254740881, 18014398509481951,
    36028797018963913, 72057594037927931, 144115188075855859, 288230376151711717,
    576460752303423433, 1152921504606846883, 2305843009213693951, 4611686018427387847,
    9223372036854775783, 18446744073709551557,
];

/// Link value meaning "no node".
const NIL: usize = usize::MAX;
/// Link value naming the list head ("before begin") sentinel.
const HEAD: usize = usize::MAX - 1;

/// A model of libstdc++'s (GCC 12) `_Hashtable` with unique keys, `std::hash<std::string>`
/// and max load factor 1: one singly linked list of all elements, each bucket remembering
/// the node *before* its first element. Only what decides the iteration order is modelled.
#[derive(Clone, Debug)]
pub struct StdHashtable {
    hashes: Vec<u64>,
    next: Vec<usize>,
    head: usize,
    buckets: Vec<usize>,
    /// Element count at which the next insert triggers a rehash (`_M_next_resize`).
    next_resize: u64,
    keys: HashSet<Vec<u8>>,
}

impl Default for StdHashtable {
    fn default() -> Self {
        Self::new()
    }
}

impl StdHashtable {
    /// A default-constructed container: one bucket, grown on the first insert.
    pub fn new() -> Self {
        StdHashtable {
            hashes: Vec::new(),
            next: Vec::new(),
            head: NIL,
            buckets: vec![NIL],
            next_resize: 0,
            keys: HashSet::new(),
        }
    }

    /// A container after `reserve(n)` (what pybind11 does before filling a map).
    pub fn with_reserve(n: usize) -> Self {
        let mut t = Self::new();
        t.reserve(n);
        t
    }

    /// The current bucket count (`bucket_count()`).
    pub fn bucket_count(&self) -> u64 {
        self.buckets.len() as u64
    }

    /// Number of keys inserted.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether no key is inserted.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// `_Prime_rehash_policy::_M_next_bkt`: the bucket count chosen for a request of `n`,
    /// updating the resize threshold as a side effect.
    fn next_bucket_count(&mut self, n: u64) -> u64 {
        if n < FAST_BUCKETS.len() as u64 {
            if n == 0 {
                // Keeps the threshold at 0 so that the first insert allocates.
                return 1;
            }
            let b = FAST_BUCKETS[n as usize];
            self.next_resize = b;
            return b;
        }
        let table = &PRIMES[..PRIMES.len() - 1];
        let i = table.partition_point(|&p| p < n);
        if i == table.len() {
            self.next_resize = u64::MAX;
            return PRIMES[PRIMES.len() - 1];
        }
        self.next_resize = table[i];
        table[i]
    }

    /// `_M_need_rehash(buckets, elements, 1)`: the new bucket count if inserting one more
    /// element must grow the table.
    fn growth_for_one_more(&mut self) -> Option<u64> {
        let wanted = self.len() as u64 + 1;
        if wanted <= self.next_resize {
            return None;
        }
        // A never-allocated table asks for at least 11 buckets.
        let min_buckets = if self.next_resize == 0 {
            wanted.max(11)
        } else {
            wanted
        };
        let buckets = self.bucket_count();
        if min_buckets >= buckets {
            Some(self.next_bucket_count((min_buckets + 1).max(buckets.saturating_mul(2))))
        } else {
            self.next_resize = buckets;
            None
        }
    }

    /// `reserve(n)` = `rehash(ceil(n / max_load))`.
    pub fn reserve(&mut self, n: usize) {
        let wanted = (self.len() as u64 + 1).max(n as u64);
        let saved = self.next_resize;
        let buckets = self.next_bucket_count(wanted);
        if buckets != self.bucket_count() {
            self.rehash(buckets);
        } else {
            self.next_resize = saved;
        }
    }

    fn link_after(&mut self, prev: usize, node: usize) {
        if prev == HEAD {
            self.next[node] = self.head;
            self.head = node;
        } else {
            self.next[node] = self.next[prev];
            self.next[prev] = node;
        }
    }

    fn bucket_of(&self, node: usize) -> usize {
        (self.hashes[node] % self.bucket_count()) as usize
    }

    /// Re-links every node, walking the old list front to back: a node whose bucket is
    /// still empty goes to the front of the list, any other node right after its bucket's
    /// "before" node (i.e. first in that bucket's run).
    fn rehash(&mut self, new_count: u64) {
        self.buckets = vec![NIL; new_count as usize];
        let mut p = self.head;
        self.head = NIL;
        let mut front_bucket = 0usize;
        while p != NIL {
            let following = self.next[p];
            let b = self.bucket_of(p);
            if self.buckets[b] == NIL {
                self.link_after(HEAD, p);
                self.buckets[b] = HEAD;
                if self.next[p] != NIL {
                    self.buckets[front_bucket] = p;
                }
                front_bucket = b;
            } else {
                let prev = self.buckets[b];
                self.link_after(prev, p);
            }
            p = following;
        }
    }

    /// Inserts `key` unless present; returns whether it was inserted.
    pub fn insert(&mut self, key: &[u8]) -> bool {
        if self.keys.contains(key) {
            return false;
        }
        if let Some(n) = self.growth_for_one_more() {
            self.rehash(n);
        }
        let node = self.hashes.len();
        self.hashes.push(std_hash_bytes(key));
        self.next.push(NIL);
        self.keys.insert(key.to_vec());
        let b = self.bucket_of(node);
        if self.buckets[b] != NIL {
            // Bucket already populated: becomes the first element of its run.
            let prev = self.buckets[b];
            self.link_after(prev, node);
        } else {
            // Empty bucket: front of the whole list; the old front's bucket now starts
            // after the new node.
            self.link_after(HEAD, node);
            let old_front = self.next[node];
            if old_front != NIL {
                let ob = self.bucket_of(old_front);
                self.buckets[ob] = node;
            }
            self.buckets[b] = HEAD;
        }
        true
    }

    /// Insertion indices (0 = first inserted) in iteration order.
    pub fn iteration_order(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.len());
        let mut p = self.head;
        while p != NIL {
            out.push(p);
            p = self.next[p];
        }
        out
    }

    /// Cached hashes in iteration order.
    pub fn hashes_in_order(&self) -> impl Iterator<Item = u64> + '_ {
        self.iteration_order().into_iter().map(|i| self.hashes[i])
    }
}

/// The order in which PyTorch writes `_extra_files` passed from Python as a dict with
/// these keys in insertion order: libstdc++ `unordered_map` iteration after
/// `reserve(n)` and inserts in dict order (spec §5). Returns indices into `names`; a
/// repeated name keeps only its first occurrence.
pub fn extra_files_write_order(names: &[&str]) -> Vec<usize> {
    let mut table = StdHashtable::with_reserve(names.len());
    let mut inserted = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        if table.insert(n.as_bytes()) {
            inserted.push(i);
        }
    }
    table
        .iteration_order()
        .into_iter()
        .map(|node| inserted[node])
        .collect()
}

/// `NAMEHASH` of spec §6 for record names (without prefix) in write order.
pub fn names_hash<'a>(names: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut set = StdHashtable::new();
    for n in names {
        set.insert(n);
    }
    set.hashes_in_order().fold(0, hash_combine)
}

// ---------------------------------------------------------------------------------------
// Archive name
// ---------------------------------------------------------------------------------------

/// The prefix `torch.jit.save(m, path)` uses (spec §1): the text after the last `/` or
/// `\`, cut at its last `.`. A name cut to nothing (`.pt`, `.hidden`, `dir/`) is an error,
/// as in PyTorch ("invalid file name").
pub fn archive_name_from_path(path: &Path) -> io::Result<String> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "invalid file name");
    let text = path.to_str().ok_or_else(invalid)?;
    let base = match text.rfind(['/', '\\']) {
        Some(i) => &text[i + 1..],
        None => text,
    };
    // The spec's examples (`.hidden` -> error) show that a leading '.' is cut too.
    let stem = match base.rfind('.') {
        Some(i) => &base[..i],
        None => base,
    };
    if stem.is_empty() {
        return Err(invalid());
    }
    Ok(stem.to_string())
}

/// Whether PyTorch deflates a record with this name (without prefix) and size.
pub fn should_compress(name: &str, size: u64) -> bool {
    // A mobile zip's `callstack_debug_map.pkl` is written compressed too (its
    // `bytecode.pkl` and `mobile_debug_handles.pkl` are stored).
    (name.starts_with("code/") && (name.ends_with(".py") || name.ends_with(".debug_pkl"))
        || name == "callstack_debug_map.pkl")
        && size > COMPRESSION_THRESHOLD as u64
}

// ---------------------------------------------------------------------------------------
// Byte layouts (pure functions)
// ---------------------------------------------------------------------------------------

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn sat32(v: u64) -> u32 {
    v.min(ZIP64_THRESHOLD) as u32
}

/// What a local header carries beyond the fixed fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalHeader {
    /// The 30 fixed bytes followed by the name.
    pub header: Vec<u8>,
    /// The zip64 extra field (empty if not needed).
    pub zip64: Vec<u8>,
    /// The `FB` padding field (always present).
    pub padding: Vec<u8>,
}

impl LocalHeader {
    /// Total bytes of the header, i.e. the data offset relative to the header start.
    pub fn byte_len(&self) -> u64 {
        (self.header.len() + self.zip64.len() + self.padding.len()) as u64
    }

    /// Whether the record gets a 24-byte descriptor.
    pub fn is_zip64(&self) -> bool {
        !self.zip64.is_empty()
    }
}

/// Builds the local header of a record at `offset` (spec §3.1, §3.2). `zip_name` is the
/// name as stored (cut at a NUL, like miniz's `strlen`); `full_name_len` is the length of
/// the name PyTorch computes the padding from (the whole string).
pub fn local_header(
    zip_name: &[u8],
    full_name_len: usize,
    offset: u64,
    uncompressed_size: u64,
    deflated: bool,
) -> LocalHeader {
    let big_size = uncompressed_size >= ZIP64_THRESHOLD;
    let big_offset = offset >= ZIP64_THRESHOLD;
    let mut zip64 = Vec::new();
    if big_size || big_offset {
        let len = if big_size { 16 } else { 0 } + if big_offset { 8 } else { 0 };
        put16(&mut zip64, ZIP64_HEADER_ID);
        put16(&mut zip64, len);
        if big_size {
            put64(&mut zip64, uncompressed_size);
            // The compressed size is not known yet when the header is written.
            put64(&mut zip64, 0);
        }
        if big_offset {
            put64(&mut zip64, offset);
        }
    }
    let start = offset + LFH_SIZE + full_name_len as u64 + 4 + zip64.len() as u64;
    let pad = (DATA_ALIGNMENT - start % DATA_ALIGNMENT) % DATA_ALIGNMENT;
    let mut padding = Vec::with_capacity(4 + pad as usize);
    put16(&mut padding, PADDING_HEADER_ID);
    put16(&mut padding, pad as u16);
    padding.resize(4 + pad as usize, b'Z');

    let mut header = Vec::with_capacity(LFH_SIZE as usize + zip_name.len());
    header.extend_from_slice(&LFH_SIGNATURE);
    put16(&mut header, if deflated { 20 } else { 0 });
    put16(&mut header, flags_for(uncompressed_size));
    put16(
        &mut header,
        if deflated {
            METHOD_DEFLATE
        } else {
            METHOD_STORED
        },
    );
    // Time, date, CRC, compressed and uncompressed size: all zero.
    header.extend_from_slice(&[0; 16]);
    put16(&mut header, zip_name.len() as u16);
    put16(&mut header, (zip64.len() + padding.len()) as u16);
    header.extend_from_slice(zip_name);
    LocalHeader {
        header,
        zip64,
        padding,
    }
}

/// Bit 11 (UTF-8) always; bit 3 (descriptor follows) only for non-empty records.
fn flags_for(uncompressed_size: u64) -> u16 {
    if uncompressed_size == 0 {
        FLAG_UTF8
    } else {
        FLAG_UTF8 | FLAG_DESCRIPTOR
    }
}

/// The data descriptor (spec §3.3): 24 bytes when the local header had a zip64 field.
pub fn data_descriptor(crc: u32, compressed: u64, uncompressed: u64, zip64: bool) -> Vec<u8> {
    let mut d = Vec::with_capacity(24);
    d.extend_from_slice(&DESCRIPTOR_SIGNATURE);
    put32(&mut d, crc);
    if zip64 {
        put64(&mut d, compressed);
        put64(&mut d, uncompressed);
    } else {
        put32(&mut d, compressed as u32);
        put32(&mut d, uncompressed as u32);
    }
    d
}

/// One finished record, as the central directory needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CentralEntry {
    /// The name as stored: the full record name (with the archive prefix), cut at its first
    /// NUL.
    pub zip_name: Vec<u8>,
    /// File offset of the record's local header.
    pub header_offset: u64,
    /// CRC-32 of the uncompressed data.
    pub crc: u32,
    /// Size of the stored data in bytes.
    pub compressed_size: u64,
    /// Size of the record's data in bytes.
    pub uncompressed_size: u64,
    /// Whether the data is deflated (method 8) rather than stored (method 0).
    pub deflated: bool,
}

/// The central directory header of one record (spec §3.5).
pub fn central_header(e: &CentralEntry) -> Vec<u8> {
    let big_size = e.uncompressed_size >= ZIP64_THRESHOLD;
    let big_offset = e.header_offset >= ZIP64_THRESHOLD;
    let mut extra = Vec::new();
    if big_size || big_offset {
        put16(&mut extra, ZIP64_HEADER_ID);
        put16(
            &mut extra,
            if big_size { 16 } else { 0 } + if big_offset { 8 } else { 0 },
        );
        if big_size {
            put64(&mut extra, e.uncompressed_size);
            put64(&mut extra, e.compressed_size);
        }
        if big_offset {
            put64(&mut extra, e.header_offset);
        }
    }
    let mut h = Vec::with_capacity(46 + e.zip_name.len() + extra.len());
    h.extend_from_slice(&CDH_SIGNATURE);
    put16(&mut h, 0); // made by
    put16(&mut h, if e.deflated { 20 } else { 0 });
    put16(&mut h, flags_for(e.uncompressed_size));
    put16(
        &mut h,
        if e.deflated {
            METHOD_DEFLATE
        } else {
            METHOD_STORED
        },
    );
    put32(&mut h, 0); // time, date
    put32(&mut h, e.crc);
    // Both size fields are keyed on the uncompressed size, as miniz does.
    put32(
        &mut h,
        if big_size {
            u32::MAX
        } else {
            e.compressed_size as u32
        },
    );
    put32(
        &mut h,
        if big_size {
            u32::MAX
        } else {
            e.uncompressed_size as u32
        },
    );
    put16(&mut h, e.zip_name.len() as u16);
    put16(&mut h, extra.len() as u16);
    put16(&mut h, 0); // comment
    put16(&mut h, 0); // disk
    put16(&mut h, 0); // internal attributes
    put32(&mut h, 0); // external attributes
    put32(&mut h, sat32(e.header_offset));
    h.extend_from_slice(&e.zip_name);
    h.extend_from_slice(&extra);
    h
}

/// Zip64 EOCD, zip64 locator and EOCD (spec §3.6), written right after the central
/// directory (so the zip64 EOCD sits at `cd_offset + cd_size`).
pub fn end_records(entries: u64, cd_offset: u64, cd_size: u64) -> Vec<u8> {
    let zip64_eocd_offset = cd_offset + cd_size;
    let mut e = Vec::with_capacity(56 + 20 + 22);
    e.extend_from_slice(&ZIP64_EOCD_SIGNATURE);
    put64(&mut e, 44);
    put16(&mut e, 0x031E);
    put16(&mut e, 45);
    put32(&mut e, 0);
    put32(&mut e, 0);
    put64(&mut e, entries);
    put64(&mut e, entries);
    put64(&mut e, cd_size);
    put64(&mut e, cd_offset);

    e.extend_from_slice(&ZIP64_LOCATOR_SIGNATURE);
    put32(&mut e, 0);
    put64(&mut e, zip64_eocd_offset);
    put32(&mut e, 1);

    let count = entries.min(0xFFFF) as u16;
    e.extend_from_slice(&EOCD_SIGNATURE);
    put16(&mut e, 0);
    put16(&mut e, 0);
    put16(&mut e, count);
    put16(&mut e, count);
    put32(&mut e, sat32(cd_size));
    put32(&mut e, sat32(cd_offset));
    put16(&mut e, 0);
    e
}

// ---------------------------------------------------------------------------------------
// The writer
// ---------------------------------------------------------------------------------------

/// Writes a TorchScript archive record by record, byte-identical to PyTorch's
/// `PyTorchStreamWriter` given the same records in the same order.
///
/// The caller writes every record including `version` (or `.data/version`) and
/// `byteorder`; [`finish`](Self::finish) appends `.data/serialization_id` and the end
/// structures. After an I/O error the writer refuses further records.
pub struct PyTorchZipWriter<W: Write> {
    out: W,
    prefix: String,
    pos: u64,
    entries: Vec<CentralEntry>,
    /// Record names (without prefix) in the set model the id hashes.
    names: StdHashtable,
    /// `CRCHASH` so far: fed by every written chunk that looks like a data descriptor.
    crc_hash: u64,
    failed: bool,
}

impl<W: Write> PyTorchZipWriter<W> {
    /// Starts an archive whose records are named `prefix/NAME`.
    pub fn new(w: W, prefix: &str) -> Self {
        PyTorchZipWriter {
            out: w,
            prefix: prefix.to_string(),
            pos: 0,
            entries: Vec::new(),
            names: StdHashtable::new(),
            crc_hash: 0,
            failed: false,
        }
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The `.data/serialization_id` PyTorch would write if the archive ended now.
    pub fn computed_serialization_id(&self) -> String {
        let names = self.names.hashes_in_order().fold(0, hash_combine);
        format!("{names:020}{:020}", self.crc_hash)
    }

    /// Writes raw bytes, no chunk inspection.
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Err(e) = self.out.write_all(bytes) {
            self.failed = true;
            return Err(e);
        }
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// PyTorch's write callback treats any chunk of at least 8 bytes that starts like a
    /// data descriptor as one and folds its "CRC" into the id (spec §6 quirk). Real
    /// descriptors are what normally feeds `CRCHASH`.
    fn inspect_chunk(&mut self, start: &[u8], len: u64) {
        if len >= 8 && start.len() >= 8 && start[..4] == DESCRIPTOR_SIGNATURE {
            let crc = u32::from_le_bytes(start[4..8].try_into().expect("4 bytes"));
            self.crc_hash = hash_combine(self.crc_hash, u64::from(crc));
        }
    }

    /// Writes one chunk the way miniz hands it to PyTorch's callback.
    fn chunk(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.put(bytes)?;
        self.inspect_chunk(bytes, bytes.len() as u64);
        Ok(())
    }

    /// Validates the name and registers it; returns the full name, or `None` if the
    /// record is the serialization id (ignored, as PyTorch does).
    fn begin(&mut self, name: &str) -> io::Result<Option<String>> {
        if self.failed {
            return Err(io::Error::other("archive writer failed earlier"));
        }
        if name == SERIALIZATION_ID_RECORD {
            return Ok(None);
        }
        let full = format!("{}/{}", self.prefix, name);
        let zip_len = zip_name(&full).len();
        if zip_len > 0xFFFF {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("record name too long: {name:?}"),
            ));
        }
        if full.starts_with('/') {
            // miniz refuses absolute names (an empty prefix would produce one).
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid record name: {full:?}"),
            ));
        }
        if !self.names.insert(name.as_bytes()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("tried to write record {name:?} twice"),
            ));
        }
        Ok(Some(full))
    }

    /// Writes the local header chunks; returns the header for the zip64 decision.
    fn write_local_header(
        &mut self,
        full: &str,
        size: u64,
        deflated: bool,
    ) -> io::Result<LocalHeader> {
        let zname = zip_name(full);
        let lh = local_header(zname, full.len(), self.pos, size, deflated);
        // miniz writes the fixed header, the name and each extra field separately; only
        // the name chunk can ever look like a descriptor (a prefix starting "PK\x07\x08").
        self.chunk(&lh.header[..LFH_SIZE as usize])?;
        self.chunk(&lh.header[LFH_SIZE as usize..])?;
        if lh.is_zip64() {
            self.chunk(&lh.zip64)?;
        }
        self.chunk(&lh.padding)?;
        Ok(lh)
    }

    /// Writes the descriptor (non-empty records only) and remembers the entry.
    fn end_record(&mut self, entry: CentralEntry, zip64: bool) -> io::Result<()> {
        if entry.uncompressed_size > 0 {
            let d = data_descriptor(
                entry.crc,
                entry.compressed_size,
                entry.uncompressed_size,
                zip64,
            );
            self.chunk(&d)?;
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Writes record `name` (relative to the prefix), deflating it iff PyTorch would.
    pub fn write_record(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let Some(full) = self.begin(name)? else {
            return Ok(());
        };
        let deflated = should_compress(name, data.len() as u64);
        let result = self.write_record_bytes(&full, data, deflated);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Writes record `name`, deflated iff `deflated` (for records kept as another writer
    /// stored them).
    pub fn write_record_as(&mut self, name: &str, data: &[u8], deflated: bool) -> io::Result<()> {
        let Some(full) = self.begin(name)? else {
            return Ok(());
        };
        let result = self.write_record_bytes(&full, data, deflated);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Writes record `name` from a deflate stream made elsewhere (another archive's
    /// record, copied without inflating and deflating it again; the structure-aware
    /// fuzz mutator repacks archives this way). `crc` and `size` are the inflated bytes'
    /// and are written as given. The stream is one chunk for the serialization id, where
    /// a fresh deflate hands the id one chunk per block (they differ only if a block
    /// starts like a data descriptor).
    pub fn write_deflated_stream(
        &mut self,
        name: &str,
        stream: &[u8],
        crc: u32,
        size: u64,
    ) -> io::Result<()> {
        let Some(full) = self.begin(name)? else {
            return Ok(());
        };
        let offset = self.pos;
        let result = self.write_local_header(&full, size, true).and_then(|lh| {
            self.chunk(stream)?;
            let entry = CentralEntry {
                zip_name: zip_name(&full).to_vec(),
                header_offset: offset,
                crc,
                compressed_size: stream.len() as u64,
                uncompressed_size: size,
                deflated: true,
            };
            self.end_record(entry, lh.is_zip64())
        });
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn write_record_bytes(&mut self, full: &str, data: &[u8], deflated: bool) -> io::Result<()> {
        let usize = data.len() as u64;
        let offset = self.pos;
        let lh = self.write_local_header(full, usize, deflated)?;
        let (crc, csize) = if deflated {
            (crc32fast::hash(data), self.write_deflated(data)?)
        } else if data.len() >= PARALLEL_CRC_BYTES {
            // Large records: the CRC is computed on a second core while this one writes
            // (the descriptor comes after the data, so nothing waits for it).
            let crc = std::thread::scope(|scope| {
                let crc = scope.spawn(|| crc32fast::hash(data));
                let written = data.chunks(HASH_PIECE).try_for_each(|p| self.put(p));
                let crc = crc.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                written.map(|()| crc)
            })?;
            self.inspect_chunk(data, usize);
            (crc, usize)
        } else {
            // One pass over the bytes: each piece is hashed while it is in cache, then
            // written. For the descriptor quirk the record still counts as one chunk.
            let mut hasher = crc32fast::Hasher::new();
            for piece in data.chunks(HASH_PIECE) {
                hasher.update(piece);
                self.put(piece)?;
            }
            self.inspect_chunk(data, usize);
            (hasher.finalize(), usize)
        };
        let entry = CentralEntry {
            zip_name: zip_name(full).to_vec(),
            header_offset: offset,
            crc,
            compressed_size: csize,
            uncompressed_size: usize,
            deflated,
        };
        self.end_record(entry, lh.is_zip64())
    }

    /// Deflates like miniz's `tdefl` at level 9, writing each flushed block as its own
    /// chunk (as the zip writer's put-buffer callback does). Returns the compressed size.
    fn write_deflated(&mut self, data: &[u8]) -> io::Result<u64> {
        // One compressor per thread, reset per record: a fresh one allocates about 300 KiB
        // of tables, and freeing them each time made the allocator return pages to the
        // kernel and fault them back in (most of a small save's time). A reset
        // compressor writes the same bytes as a new one (same flags, tables zeroed).
        let mut compressor = DEFLATER.with(|d| d.borrow_mut().take()).unwrap_or_else(|| {
            Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(
                9, -15, 0,
            )))
        });
        compressor.reset();
        let result = self.deflate_with(&mut compressor, data);
        DEFLATER.with(|d| *d.borrow_mut() = Some(compressor));
        result
    }

    fn deflate_with(&mut self, compressor: &mut CompressorOxide, data: &[u8]) -> io::Result<u64> {
        let mut written = 0u64;
        let mut error = None;
        let mut input = data;
        loop {
            let (status, consumed) =
                compress_to_output(compressor, input, TDEFLFlush::Finish, |block| {
                    match self.chunk(block) {
                        Ok(()) => {
                            written += block.len() as u64;
                            true
                        }
                        Err(e) => {
                            error = Some(e);
                            false
                        }
                    }
                });
            if let Some(e) = error.take() {
                return Err(e);
            }
            match status {
                TDEFLStatus::Done => return Ok(written),
                TDEFLStatus::Okay => input = &input[consumed.min(input.len())..],
                other => return Err(io::Error::other(format!("deflate failed: {other:?}"))),
            }
        }
    }

    /// Writes a stored record of exactly `size` bytes read from `reader`, without holding
    /// it in memory (the CRC is computed while copying). Records PyTorch would deflate
    /// (small `code/` files) are read fully and deflated.
    pub fn write_record_from_reader(
        &mut self,
        name: &str,
        size: u64,
        reader: &mut dyn Read,
    ) -> io::Result<()> {
        let Some(full) = self.begin(name)? else {
            return Ok(());
        };
        if should_compress(name, size) {
            let mut data = Vec::with_capacity(size as usize);
            reader.take(size).read_to_end(&mut data)?;
            check_length(data.len() as u64, size)?;
            return self.write_record_bytes(&full, &data, should_compress(name, data.len() as u64));
        }
        let result = self.copy_stored(&full, size, reader);
        if result.is_err() {
            // A local header without its data cannot be completed any more.
            self.failed = true;
        }
        result
    }

    fn copy_stored(&mut self, full: &str, size: u64, reader: &mut dyn Read) -> io::Result<()> {
        let offset = self.pos;
        let lh = self.write_local_header(full, size, false)?;
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0u8; COPY_BUFFER.min(size.max(8) as usize)];
        let mut copied = 0u64;
        while copied < size {
            let want = (size - copied).min(buf.len() as u64) as usize;
            // `read_some` only stops short at the end of the reader.
            let n = read_some(reader, &mut buf[..want])?;
            if n < want {
                return check_length(copied + n as u64, size);
            }
            if copied == 0 {
                // PyTorch hands the whole record to its callback as one chunk, so only
                // the record's first 8 bytes matter for the descriptor quirk.
                let head = buf[..n.min(8)].to_vec();
                self.inspect_chunk(&head, size);
            }
            hasher.update(&buf[..n]);
            self.put(&buf[..n])?;
            copied += n as u64;
        }
        let entry = CentralEntry {
            zip_name: zip_name(full).to_vec(),
            header_offset: offset,
            crc: hasher.finalize(),
            compressed_size: size,
            uncompressed_size: size,
            deflated: false,
        };
        self.end_record(entry, lh.is_zip64())
    }

    /// Appends `.data/serialization_id` as PyTorch computes it, then the central
    /// directory and end records.
    pub fn finish(self) -> io::Result<W> {
        let id = self.computed_serialization_id();
        self.finish_with_serialization_id(Some(&id))
    }

    /// Like [`finish`](Self::finish), but writes the given id (to re-save a loaded archive
    /// byte-identically; PyTorch itself would compute a fresh one), or none (as PyTorch
    /// 2.0 does).
    pub fn finish_with_serialization_id(mut self, id: Option<&str>) -> io::Result<W> {
        if self.failed {
            return Err(io::Error::other("archive writer failed earlier"));
        }
        if let Some(id) = id {
            let full = format!("{}/{}", self.prefix, SERIALIZATION_ID_RECORD);
            self.write_record_bytes(
                &full,
                id.as_bytes(),
                should_compress(SERIALIZATION_ID_RECORD, id.len() as u64),
            )?;
        }
        let cd_offset = self.pos;
        let mut cd = Vec::new();
        for e in &self.entries {
            cd.extend_from_slice(&central_header(e));
        }
        // miniz writes the whole central directory, then each end record.
        self.chunk(&cd)?;
        let end = end_records(self.entries.len() as u64, cd_offset, cd.len() as u64);
        self.put(&end)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The entry name miniz stores: the C string up to the first NUL.
fn zip_name(full: &str) -> &[u8] {
    let b = full.as_bytes();
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// Reads until `buf` is full or the reader ends.
fn read_some(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn check_length(got: u64, want: u64) -> io::Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("record reader ended after {got} of {want} bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn a_copied_deflate_stream_writes_the_same_archive() {
        use crate::zip_archive::ZipArchiveReader;
        use crate::zip_archive::read::Method;
        let code: Vec<u8> = (0..40)
            .flat_map(|i| format!("def f{i}(self) -> int:\n  return {i}\n").into_bytes())
            .collect();
        let write = |copy: Option<&ZipArchiveReader>| {
            let mut w = PyTorchZipWriter::new(Vec::new(), "archive");
            w.write_record("data.pkl", b"\x80\x02N.").unwrap();
            match copy {
                None => w.write_record("code/__torch__.py", &code).unwrap(),
                Some(a) => {
                    let r = a.record("code/__torch__.py").unwrap();
                    assert_eq!(r.method, Method::Deflated);
                    let raw = a.raw_data(r).unwrap();
                    w.write_deflated_stream("code/__torch__.py", &raw, r.crc32, r.size)
                        .unwrap()
                }
            }
            w.finish().unwrap()
        };
        let fresh = write(None);
        let archive = ZipArchiveReader::from_bytes(fresh.clone()).unwrap();
        let copied = write(Some(&archive));
        assert!(copied == fresh, "a copied stream changed the archive");
        let back = ZipArchiveReader::from_bytes(copied).unwrap();
        assert_eq!(
            &back.read("code/__torch__.py", true).unwrap()[..],
            &code[..]
        );
    }

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    /// Entries of an archive in central-directory order, read with the `zip` crate.
    fn read_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut z = zip::ZipArchive::with_config(
            zip::read::Config {
                archive_offset: zip::read::ArchiveOffset::Known(0),
            },
            Cursor::new(bytes),
        )
        .expect("zip crate reads the archive");
        (0..z.len())
            .map(|i| {
                let mut f = z.by_index(i).unwrap();
                let name = String::from_utf8(f.name_raw().to_vec()).unwrap();
                let mut data = Vec::new();
                f.read_to_end(&mut data).unwrap();
                (name, data)
            })
            .collect()
    }

    // Reference values from spec/tools/sidpy.py (an independent Python model).
    #[test]
    fn hash_bytes_matches_python_model() {
        assert_eq!(std_hash_bytes(b""), 0x553e93901e462a6e);
        assert_eq!(std_hash_bytes(b"a"), 0x454ddee488c1ed6b);
        assert_eq!(std_hash_bytes(b"data.pkl"), 0x44943d565847b09e);
        assert_eq!(std_hash_bytes(b"12345678"), 0x8c5b90a33a04dca5);
        assert_eq!(std_hash_bytes(b"123456789abcdefgh"), 0x8ead5e287cbb71c4);
        assert_eq!(std_hash_bytes("ünï".as_bytes()), 0xfda1077e720d65df);
    }

    #[test]
    fn set_order_matches_python_model_across_rehashes() {
        let mut names: Vec<String> = (0..40).map(|i| format!("data/{i}")).collect();
        names.extend(["data.pkl", "constants.pkl", "version", "byteorder"].map(String::from));
        let mut set = StdHashtable::new();
        for n in &names {
            assert!(set.insert(n.as_bytes()));
        }
        assert!(!set.insert(b"version"), "duplicates are not inserted");
        assert_eq!(set.bucket_count(), 59);
        let expected = [
            43, 41, 40, 38, 35, 33, 32, 31, 30, 42, 12, 37, 14, 15, 8, 34, 9, 11, 3, 36, 6, 39, 10,
            5, 4, 16, 13, 1, 27, 7, 0, 21, 17, 18, 22, 19, 2, 25, 23, 24, 29, 26, 20, 28,
        ];
        assert_eq!(set.iteration_order(), expected);
        assert_eq!(
            names_hash(names.iter().map(|n| n.as_bytes())),
            18440975902914380311
        );
    }

    /// Spec §6: bucket counts of a default-constructed set as names are inserted.
    #[test]
    fn set_growth_sequence() {
        let mut set = StdHashtable::new();
        assert_eq!(set.bucket_count(), 1);
        let mut seen = vec![1];
        for i in 0..3000u32 {
            set.insert(format!("n{i}").as_bytes());
            if *seen.last().unwrap() != set.bucket_count() {
                seen.push(set.bucket_count());
                // The growth happens exactly when size would exceed the old count.
                assert!(i == 0 || set.len() as u64 - 1 == seen[seen.len() - 2]);
            }
        }
        assert_eq!(seen, [1, 13, 29, 59, 127, 257, 541, 1109, 2357, 5087]);
    }

    /// Spec §5: bucket counts after `reserve(n)`.
    #[test]
    fn reserve_bucket_counts() {
        let expect = |n: usize, b: u64| {
            assert_eq!(
                StdHashtable::with_reserve(n).bucket_count(),
                b,
                "reserve({n})"
            )
        };
        for (n, b) in [
            (0, 2),
            (1, 2),
            (2, 2),
            (3, 3),
            (4, 5),
            (5, 5),
            (6, 7),
            (7, 7),
            (8, 11),
            (11, 11),
            (12, 13),
            (13, 13),
        ] {
            expect(n, b);
        }
        for (n, b) in [
            (14, 17),
            (17, 17),
            (18, 19),
            (20, 23),
            (40, 41),
            (100, 103),
            (300, 313),
            (202409, 202409),
            (202410, 218971),
        ] {
            expect(n, b);
        }
        // Inserting the reserved number of names never rehashes.
        for n in [1usize, 3, 13, 14, 20, 40, 100, 300] {
            let mut t = StdHashtable::with_reserve(n);
            let b = t.bucket_count();
            for i in 0..n {
                t.insert(format!("extra{i}").as_bytes());
            }
            assert_eq!(t.bucket_count(), b);
        }
    }

    #[test]
    fn archive_names() {
        let name = |p: &str| archive_name_from_path(Path::new(p)).ok();
        assert_eq!(name("names/basic.pt").as_deref(), Some("basic"));
        assert_eq!(name("x.tar.gz").as_deref(), Some("x.tar"));
        assert_eq!(name("noext").as_deref(), Some("noext"));
        assert_eq!(name("trailingdot.").as_deref(), Some("trailingdot"));
        assert_eq!(name("ünï.pt").as_deref(), Some("ünï"));
        assert_eq!(name("a b.pt").as_deref(), Some("a b"));
        assert_eq!(name("c:\\models\\win.pt").as_deref(), Some("win"));
        assert_eq!(name("a.b/c").as_deref(), Some("c"));
        for bad in [".hidden", ".pt", "dir/", "dir/.pt", ""] {
            let e = archive_name_from_path(Path::new(bad)).unwrap_err();
            assert_eq!(e.to_string(), "invalid file name", "{bad:?}");
        }
    }

    #[test]
    fn compression_rule() {
        assert!(should_compress("code/__torch__/m.py", 201));
        assert!(!should_compress("code/__torch__/m.py", 200));
        assert!(should_compress("code/__torch__/m.py.debug_pkl", 1000));
        assert!(!should_compress("extra/code/x.py", 1000));
        assert!(!should_compress("data.pkl", 1000));
        assert!(!should_compress("code/x.txt", 1000));
    }

    /// The writer's deflate chunks, concatenated, are the stream the spec verified.
    #[test]
    fn deflate_chunks_equal_compress_to_vec() {
        let mut text = Vec::new();
        for i in 0..20000 {
            text.extend_from_slice(
                format!("  x{} = torch.add(x, {})\n", i % 97, i * 7919 % 1013).as_bytes(),
            );
        }
        let mut w = PyTorchZipWriter::new(Vec::new(), "archive");
        w.write_record("code/__torch__/big.py", &text).unwrap();
        let out = w.finish().unwrap();
        let expected = miniz_oxide::deflate::compress_to_vec(&text, 9);
        let lfh_name_len = u16_at(&out, 26) as usize;
        let start = 30 + lfh_name_len + u16_at(&out, 28) as usize;
        assert_eq!(&out[start..start + expected.len()], &expected[..]);
        assert_eq!(
            &out[start + expected.len()..start + expected.len() + 4],
            b"PK\x07\x08"
        );
        assert_eq!(read_entries(&out)[0].1, text);
    }

    /// Spec §7: the tiny archive's layout, rebuilt from records of the same sizes.
    #[test]
    fn walkthrough_offsets() {
        let mut w = PyTorchZipWriter::new(Vec::new(), "archive");
        w.write_record("data.pkl", &[0x80; 80]).unwrap();
        w.write_record("code/__torch__/tinymod.py", &[b'c'; 198])
            .unwrap();
        w.write_record("code/__torch__/tinymod.py.debug_pkl", &[0x80; 106])
            .unwrap();
        w.write_record("constants.pkl", b"\x80\x02\x29\x2e")
            .unwrap();
        w.write_record("version", b"3\n").unwrap();
        w.write_record("byteorder", b"little").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len(), 1803);
        assert_eq!(
            &out[..0x2E],
            b"PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00\x12\x00archive/data.pkl"
        );
        assert_eq!(&out[0x2E..0x32], b"FB\x0e\x00");
        assert!(out[0x32..0x40].iter().all(|&b| b == b'Z'));
        assert_eq!(&out[0x90..0x94], b"PK\x07\x08");
        assert_eq!(u32_at(&out, 0x98), 80);
        assert_eq!(u32_at(&out, 0x9C), 80);
        let lfhs = [0x00, 0xA0, 0x1D6, 0x2BA, 0x314, 0x392, 0x416];
        let datas = [0x40, 0x100, 0x240, 0x300, 0x380, 0x400, 0x480];
        for (&l, &d) in lfhs.iter().zip(&datas) {
            assert_eq!(&out[l..l + 4], b"PK\x03\x04", "LFH at {l:#x}");
            assert_eq!(
                l + 30 + u16_at(&out, l + 26) as usize + u16_at(&out, l + 28) as usize,
                d
            );
        }
        assert_eq!(u16_at(&out, 0xA0 + 26), 33);
        assert_eq!(u16_at(&out, 0xA0 + 28), 33);
        assert_eq!(&out[0xBE..0xDF], b"archive/code/__torch__/tinymod.py");
        assert_eq!(&out[0xDF..0xE3], b"FB\x1d\x00");
        // constants.pkl: descriptor right after its 4 data bytes, CRC from the spec.
        assert_eq!(&out[0x304..0x308], b"PK\x07\x08");
        assert_eq!(u32_at(&out, 0x308), 0x57092F6D);
        assert_eq!(&out[0x380..0x382], b"3\n");
        assert_eq!(&out[0x400..0x406], b"little");
        // Central directory: first header, as printed in the spec except the CRC.
        let cd = 0x4B8;
        assert_eq!(
            &out[cd..cd + 16],
            b"PK\x01\x02\x00\x00\x00\x00\x08\x08\x00\x00\x00\x00\x00\x00"
        );
        assert_eq!(
            &out[cd + 20..cd + 46],
            b"\x50\x00\x00\x00\x50\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        );
        assert_eq!(&out[cd + 46..cd + 62], b"archive/data.pkl");
        let tail: Vec<u8> = [
            &b"PK\x06\x06\x2c\x00\x00\x00\x00\x00\x00\x00\x1e\x03\x2d\x00\x00\x00\x00\x00\x00\x00\x00\x00"[..],
            b"\x07\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00",
            b"\xf1\x01\x00\x00\x00\x00\x00\x00\xb8\x04\x00\x00\x00\x00\x00\x00",
            b"PK\x06\x07\x00\x00\x00\x00\xa9\x06\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00",
            b"PK\x05\x06\x00\x00\x00\x00\x07\x00\x07\x00\xf1\x01\x00\x00\xb8\x04\x00\x00\x00\x00",
        ]
        .concat();
        assert_eq!(&out[0x6A9..], &tail[..]);
    }

    /// The `zip` crate (an independent reader) reads what we write, and data is aligned.
    #[test]
    fn readback_with_zip_crate() {
        let code: Vec<u8> = (0..500)
            .flat_map(|i| format!("def f{i}(x): return x\n").into_bytes())
            .collect();
        let records: Vec<(&str, Vec<u8>)> = vec![
            ("extra/ünï-名前 x.txt", "unicode ☃".as_bytes().to_vec()),
            ("extra/empty", vec![]),
            ("extra/pk", b"PK\x07\x08\x01\x02\x03\x04rest".to_vec()),
            ("data/0", (0..=255u8).cycle().take(5000).collect()),
            ("data/1", vec![]),
            ("data.pkl", b"\x80\x02}q\x00.".to_vec()),
            ("code/__torch__/m.py", code.clone()),
            ("code/__torch__/m.py.debug_pkl", code[..201].to_vec()),
            ("constants.pkl", b"\x80\x02\x29\x2e".to_vec()),
            ("version", b"3\n".to_vec()),
            ("byteorder", b"little".to_vec()),
        ];
        let mut w = PyTorchZipWriter::new(Vec::new(), "my model");
        for (n, d) in &records {
            w.write_record(n, d).unwrap();
        }
        let id = w.computed_serialization_id();
        let out = w.finish().unwrap();
        let entries = read_entries(&out);
        assert_eq!(entries.len(), records.len() + 1);
        for ((name, data), (rn, rd)) in entries.iter().zip(&records) {
            assert_eq!(name, &format!("my model/{rn}"));
            assert_eq!(data, rd, "{rn}");
        }
        assert_eq!(
            entries.last().unwrap(),
            &(
                "my model/.data/serialization_id".to_string(),
                id.into_bytes()
            )
        );
        let mut z = zip::ZipArchive::with_config(
            zip::read::Config {
                archive_offset: zip::read::ArchiveOffset::Known(0),
            },
            Cursor::new(&out),
        )
        .unwrap();
        for i in 0..z.len() {
            let f = z.by_index_raw(i).unwrap();
            let name = String::from_utf8(f.name_raw().to_vec()).unwrap();
            assert_eq!(f.data_start().unwrap() % 64, 0, "{name}");
            let deflated = name.ends_with("m.py") || name.ends_with("debug_pkl");
            assert_eq!(
                f.compression() == zip::CompressionMethod::Deflated,
                deflated,
                "{name}"
            );
        }
        // 0-byte records: flags 0x0800 and no descriptor, so the next LFH follows the padding.
        let needle = b"my model/extra/empty";
        let empty_at = out.windows(needle.len()).position(|w| w == needle).unwrap() - 30;
        assert_eq!(u16_at(&out, empty_at + 6), 0x0800);
        let data_at = empty_at + 30 + 20 + u16_at(&out, empty_at + 28) as usize;
        assert_eq!(&out[data_at..data_at + 4], b"PK\x03\x04");
    }

    /// The id follows spec §6, including the descriptor look-alike quirk and empty records.
    #[test]
    fn serialization_id_rules() {
        let write = |recs: &[(&str, &[u8])]| {
            let mut w = PyTorchZipWriter::new(Vec::new(), "archive");
            for (n, d) in recs {
                w.write_record(n, d).unwrap();
            }
            w.computed_serialization_id()
        };
        let recs: [(&str, &[u8]); 3] = [
            ("extra/a", b"PK\x07\x08\x11\x22\x33\x44zz"),
            ("extra/e", b""),
            ("version", b"3\n"),
        ];
        let id = write(&recs);
        let names = names_hash(recs.iter().map(|r| r.0.as_bytes()));
        let mut crc = 0;
        crc = hash_combine(crc, 0x4433_2211);
        crc = hash_combine(crc, u64::from(crc32fast::hash(recs[0].1)));
        crc = hash_combine(crc, u64::from(crc32fast::hash(recs[2].1)));
        assert_eq!(id, format!("{names:020}{crc:020}"));
        // Fewer than 8 bytes never count as a descriptor.
        let short: [(&str, &[u8]); 1] = [("extra/a", b"PK\x07\x08\x11\x22\x33")];
        let crc = hash_combine(0, u64::from(crc32fast::hash(short[0].1)));
        assert_eq!(write(&short)[20..], format!("{crc:020}"));
    }

    #[test]
    fn streaming_equals_in_memory() {
        let big: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        let quirk = b"PK\x07\x08\xaa\xbb\xcc\xddpayload".to_vec();
        let code = vec![b'#'; 300];
        let recs: Vec<(&str, &[u8])> = vec![
            ("data/0", &big),
            ("extra/q", &quirk),
            ("data/1", b""),
            ("code/x.py", &code),
            ("data/2", b"1234567"),
        ];
        let mut a = PyTorchZipWriter::new(Vec::new(), "archive");
        let mut b = PyTorchZipWriter::new(Vec::new(), "archive");
        for (n, d) in &recs {
            a.write_record(n, d).unwrap();
            // A reader that hands out 3 bytes at a time.
            struct Slow<'a>(&'a [u8]);
            impl Read for Slow<'_> {
                fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                    let n = buf.len().min(3).min(self.0.len());
                    buf[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            b.write_record_from_reader(n, d.len() as u64, &mut Slow(d))
                .unwrap();
        }
        assert_eq!(a.computed_serialization_id(), b.computed_serialization_id());
        assert_eq!(a.finish().unwrap(), b.finish().unwrap());
    }

    #[test]
    fn writer_errors() {
        let mut w = PyTorchZipWriter::new(Vec::new(), "archive");
        w.write_record("a", b"1").unwrap();
        assert!(w.write_record("a", b"2").is_err(), "duplicate name");
        // The caller's serialization id is ignored, as in PyTorch.
        w.write_record(SERIALIZATION_ID_RECORD, b"x").unwrap();
        let err = w
            .write_record_from_reader("b", 10, &mut &b"short"[..])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            w.write_record("c", b"3").is_err(),
            "writer is poisoned after a partial record"
        );
        let mut w = PyTorchZipWriter::new(Vec::new(), "");
        assert!(
            w.write_record("data.pkl", b"x").is_err(),
            "empty prefix gives an absolute name"
        );
    }

    /// Spec §3.2/§3.3/§3.5 byte layouts for sizes and offsets beyond 4 GiB.
    #[test]
    fn zip64_layouts() {
        let size = 0x1_0000_0010u64;
        let lh = local_header(b"archive/data/0", 14, 0, size, false);
        assert_eq!(
            lh.zip64,
            b"\x01\x00\x10\x00\x10\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        );
        assert_eq!(&lh.header[14..26], &[0; 12], "CRC and 32-bit sizes stay 0");
        assert_eq!(lh.byte_len() % 64, 0);
        assert_eq!(lh.padding.len(), 4 + 60);

        // The threshold is inclusive for sizes and offsets.
        assert!(local_header(b"n", 1, 0, 0xFFFF_FFFF, false).is_zip64());
        assert!(!local_header(b"n", 1, 0, 0xFFFF_FFFE, false).is_zip64());
        let at = local_header(b"archive/x", 9, 0xFFFF_FFFF, 12, false);
        assert_eq!(
            at.zip64,
            b"\x01\x00\x08\x00\xff\xff\xff\xff\x00\x00\x00\x00"
        );
        assert_eq!((0xFFFF_FFFFu64 + at.byte_len()) % 64, 0);
        assert!(!local_header(b"archive/x", 9, 0xFFFF_FFFE, 12, false).is_zip64());
        let both = local_header(b"n", 1, 0x2_0000_0000, size, false);
        assert_eq!(both.zip64.len(), 28);
        assert_eq!(u16_at(&both.zip64, 2), 24);
        assert_eq!(u64_at(&both.zip64, 4), size);
        assert_eq!(u64_at(&both.zip64, 12), 0);
        assert_eq!(u64_at(&both.zip64, 20), 0x2_0000_0000);

        assert_eq!(
            data_descriptor(0xAABBCCDD, 12, 12, true),
            b"PK\x07\x08\xdd\xcc\xbb\xaa\x0c\0\0\0\0\0\0\0\x0c\0\0\0\0\0\0\0"
        );
        assert_eq!(data_descriptor(0xAABBCCDD, 12, 12, false).len(), 16);

        let e = CentralEntry {
            zip_name: b"archive/data/0".to_vec(),
            header_offset: 0,
            crc: 7,
            compressed_size: size,
            uncompressed_size: size,
            deflated: false,
        };
        let h = central_header(&e);
        assert_eq!(u32_at(&h, 20), u32::MAX);
        assert_eq!(u32_at(&h, 24), u32::MAX);
        assert_eq!(u32_at(&h, 42), 0);
        assert_eq!(
            &h[46 + 14..],
            b"\x01\x00\x10\x00\x10\x00\x00\x00\x01\x00\x00\x00\x10\x00\x00\x00\x01\x00\x00\x00"
        );
        let e = CentralEntry {
            header_offset: 0x1_0000_00E8,
            compressed_size: 12,
            uncompressed_size: 12,
            ..e
        };
        let h = central_header(&e);
        assert_eq!(u32_at(&h, 20), 12);
        assert_eq!(u32_at(&h, 42), u32::MAX);
        assert_eq!(
            &h[46 + 14..],
            b"\x01\x00\x08\x00\xe8\x00\x00\x00\x01\x00\x00\x00"
        );

        let end = end_records(70007, 0x1_2345_6789, 0x10_0000);
        assert_eq!(u64_at(&end, 24), 70007);
        assert_eq!(u64_at(&end, 32), 70007);
        assert_eq!(u64_at(&end, 48), 0x1_2345_6789);
        assert_eq!(u64_at(&end, 56 + 8), 0x1_2345_6789 + 0x10_0000);
        let eocd = &end[76..];
        assert_eq!(&eocd[..4], b"PK\x05\x06");
        assert_eq!((u16_at(eocd, 8), u16_at(eocd, 10)), (0xFFFF, 0xFFFF));
        assert_eq!(u32_at(eocd, 12), 0x10_0000);
        assert_eq!(u32_at(eocd, 16), u32::MAX);
    }

    /// Keeps the first and last bytes of a huge stream.
    struct HeadTail {
        head: Vec<u8>,
        tail: std::collections::VecDeque<u8>,
        total: u64,
    }
    impl Write for HeadTail {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.head.len() < 4096 {
                let k = (4096 - self.head.len()).min(buf.len());
                self.head.extend_from_slice(&buf[..k]);
            }
            let keep = buf.len().min(1 << 16);
            self.tail.extend(&buf[buf.len() - keep..]);
            while self.tail.len() > 1 << 16 {
                self.tail.pop_front();
            }
            self.total += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A real > 4 GiB record through the streaming path (only head and tail are kept).
    #[test]
    fn zip64_record_streamed() {
        let size = 0x1_0000_0010u64;
        let sink = HeadTail {
            head: Vec::new(),
            tail: Default::default(),
            total: 0,
        };
        let mut w = PyTorchZipWriter::new(sink, "archive");
        w.write_record_from_reader("data/0", size, &mut io::repeat(0x11).take(size))
            .unwrap();
        w.write_record("data.pkl", b"twelve bytes").unwrap();
        let out = w.finish().unwrap();
        // Expected CRC, built independently by combining CRCs of doubling blocks.
        let mut block = crc32fast::Hasher::new();
        block.update(&vec![0x11; 1 << 20]);
        for _ in 0..12 {
            let copy = block.clone();
            block.combine(&copy);
        }
        block.update(&[0x11; 16]);
        let crc = block.finalize();

        let head = &out.head;
        assert_eq!(u16_at(head, 28), 4 + 16 + 4 + 60);
        assert_eq!(
            &head[44..64],
            b"\x01\x00\x10\x00\x10\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
        );
        assert_eq!(&head[64..68], b"FB\x3c\x00");
        assert_eq!(head[128], 0x11);

        let tail: Vec<u8> = out.tail.iter().copied().collect();
        let base = out.total - tail.len() as u64;
        let at = |abs: u64| (abs - base) as usize;
        let desc = 128 + size;
        assert_eq!(
            &tail[at(desc)..at(desc) + 8],
            [&b"PK\x07\x08"[..], &crc.to_le_bytes()].concat()
        );
        assert_eq!(u64_at(&tail, at(desc) + 8), size);
        assert_eq!(u64_at(&tail, at(desc) + 16), size);
        let lfh2 = desc + 24;
        assert_eq!(&tail[at(lfh2)..at(lfh2) + 4], b"PK\x03\x04");
        let l2 = at(lfh2);
        assert_eq!(
            &tail[l2 + 46..l2 + 58],
            [&b"\x01\x00\x08\x00"[..], &lfh2.to_le_bytes()].concat()
        );
        let data2 = lfh2 + 30 + 16 + u16_at(&tail, l2 + 28) as u64;
        assert_eq!(data2 % 64, 0);
        // A small record beyond 4 GiB still gets a 24-byte descriptor.
        assert_eq!(&tail[at(data2 + 12)..at(data2 + 16)], b"PK\x07\x08");
        assert_eq!(u64_at(&tail, at(data2 + 12) + 8), 12);
        // End records point back correctly.
        let eocd = &tail[tail.len() - 22..];
        assert_eq!(u32_at(eocd, 16), u32::MAX);
        let loc = &tail[tail.len() - 42..tail.len() - 22];
        let z64 = at(u64_at(loc, 8));
        assert_eq!(&tail[z64..z64 + 4], b"PK\x06\x06");
        assert_eq!(u64_at(&tail, z64 + 32), 3);
        let cd = u64_at(&tail, z64 + 48);
        let h = at(cd);
        assert_eq!(&tail[h..h + 4], b"PK\x01\x02");
        assert_eq!(u32_at(&tail, h + 16), crc);
        assert_eq!(
            (u32_at(&tail, h + 20), u32_at(&tail, h + 24)),
            (u32::MAX, u32::MAX)
        );
    }
}

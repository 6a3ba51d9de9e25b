//! A flatbuffer builder that lays out bytes exactly as the C++ `FlatBufferBuilder`
//! PyTorch links (flatbuffers 24.12), so files written here are byte-identical to
//! PyTorch's.
//!
//! Written by hand because the Rust `flatbuffers` builder places bytes differently in
//! ways that matter for identity: it aligns empty vectors (C++ `PreAlign` returns early
//! for zero lengths, which is why PyTorch's empty `[long]` vectors are unaligned), has no
//! `ForceVectorAlignment`, and its string sharing differs. The format itself is standard;
//! the generated readers and the verifier still check everything written here.
//!
//! Bytes are built back to front as in C++: an offset ("location") is the buffer size
//! when the object was finished, i.e. its distance from the end of the final buffer.

use std::collections::HashMap;

/// A finished object: its distance from the end of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Loc(pub u32);

/// The size of `uoffset_t`.
const UOFFSET: usize = 4;

/// Padding that makes `size` a multiple of `align` (a power of two).
fn padding(size: usize, align: usize) -> usize {
    (!size).wrapping_add(1) & (align - 1)
}

/// A flatbuffer under construction, back to front, with C++ `FlatBufferBuilder`'s
/// alignment, vtable sharing and string sharing.
#[derive(Default)]
pub struct Builder {
    /// The bytes in reverse order: `rev[0]` is the last byte of the final buffer.
    rev: Vec<u8>,
    minalign: usize,
    /// Fields of the table being built: (location of the value, vtable byte offset).
    fields: Vec<(usize, u16)>,
    max_voffset: u16,
    table_start: usize,
    /// Vtables written so far, by content: C++ shares identical vtables.
    vtables: HashMap<Vec<u8>, usize>,
    /// Strings made with `create_shared_string`, by content.
    shared: HashMap<Vec<u8>, Loc>,
}

impl Builder {
    /// An empty builder.
    pub fn new() -> Self {
        Builder {
            minalign: 1,
            ..Default::default()
        }
    }

    /// Bytes written so far (the location the next finished object gets).
    pub fn size(&self) -> usize {
        self.rev.len()
    }

    fn track_min_align(&mut self, align: usize) {
        self.minalign = self.minalign.max(align);
    }

    fn pad(&mut self, n: usize) {
        self.rev.resize(self.rev.len() + n, 0);
    }

    fn align(&mut self, align: usize) {
        self.track_min_align(align);
        self.pad(padding(self.size(), align));
    }

    /// Aligns so that after `len` more bytes the size is a multiple of `align`. Does
    /// nothing (not even tracking the alignment) when `len` is 0, as in C++.
    fn pre_align(&mut self, len: usize, align: usize) {
        if len == 0 {
            return;
        }
        self.track_min_align(align);
        self.pad(padding(self.size() + len, align));
    }

    /// Appends bytes that appear in this order in the final buffer.
    fn push_bytes(&mut self, bytes: &[u8]) {
        self.rev.extend(bytes.iter().rev());
    }

    fn push_scalar<const N: usize>(&mut self, le: [u8; N]) -> usize {
        self.align(N);
        self.push_bytes(&le);
        self.size()
    }

    /// Overwrites `N` bytes of an element finished at `loc`.
    fn write_at<const N: usize>(&mut self, loc: usize, le: [u8; N]) {
        for (k, b) in le.into_iter().enumerate() {
            self.rev[loc - 1 - k] = b;
        }
    }

    /// The uoffset from the next 4-byte slot to `target`.
    fn refer_to(&mut self, target: Loc) -> u32 {
        self.align(UOFFSET);
        (self.size() - target.0 as usize + UOFFSET) as u32
    }

    fn push_offset(&mut self, target: Loc) -> usize {
        let rel = self.refer_to(target);
        self.push_scalar(rel.to_le_bytes())
    }

    /// `CreateString`: `s` with a NUL terminator and its length prefix (not shared).
    pub fn create_string(&mut self, s: &[u8]) -> Loc {
        self.pre_align(s.len() + 1, UOFFSET);
        self.pad(1);
        self.push_bytes(s);
        Loc(self.push_scalar((s.len() as u32).to_le_bytes()) as u32)
    }

    /// `CreateSharedString`: the string is written, then dropped again if an equal one
    /// was shared before (the alignment it tracked stays tracked, as in C++).
    pub fn create_shared_string(&mut self, s: &[u8]) -> Loc {
        let before = self.size();
        let loc = self.create_string(s);
        if let Some(&earlier) = self.shared.get(s) {
            self.rev.truncate(before);
            return earlier;
        }
        self.shared.insert(s.to_vec(), loc);
        loc
    }

    fn start_vector(&mut self, byte_len: usize, align: usize) {
        self.pre_align(byte_len, UOFFSET);
        self.pre_align(byte_len, align);
    }

    fn end_vector(&mut self, len: usize) -> Loc {
        Loc(self.push_scalar((len as u32).to_le_bytes()) as u32)
    }

    /// A vector of scalars or structs given as little-endian bytes, `len` elements of
    /// `elem_align` alignment.
    pub fn create_vector_raw(&mut self, bytes: &[u8], len: usize, elem_align: usize) -> Loc {
        self.start_vector(bytes.len(), elem_align);
        self.push_bytes(bytes);
        self.end_vector(len)
    }

    /// A vector of `u32`s (`[uint]`).
    pub fn create_vector_u32(&mut self, v: &[u32]) -> Loc {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.create_vector_raw(&bytes, v.len(), 4)
    }

    /// A vector of `i32`s (`[int]`).
    pub fn create_vector_i32(&mut self, v: &[i32]) -> Loc {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.create_vector_raw(&bytes, v.len(), 4)
    }

    /// A vector of `i64`s (`[long]`), 8-byte aligned unless empty.
    pub fn create_vector_i64(&mut self, v: &[i64]) -> Loc {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.create_vector_raw(&bytes, v.len(), 8)
    }

    /// A vector of `f64`s (`[double]`), 8-byte aligned unless empty.
    pub fn create_vector_f64(&mut self, v: &[f64]) -> Loc {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.create_vector_raw(&bytes, v.len(), 8)
    }

    /// A vector of offsets to finished objects (`[Table]`, `[string]`), in the order given.
    pub fn create_vector_offsets(&mut self, v: &[Loc]) -> Loc {
        self.start_vector(v.len() * UOFFSET, UOFFSET);
        for &target in v.iter().rev() {
            self.push_offset(target);
        }
        self.end_vector(v.len())
    }

    /// `ForceVectorAlignment`: the next vector of `byte_len` bytes starts at a multiple
    /// of `align` (PyTorch: 32 for storage bytes). Nothing happens for empty vectors.
    pub fn force_vector_alignment(&mut self, byte_len: usize, align: usize) {
        self.pre_align(byte_len, align);
    }

    /// `CreateStruct`: a struct stored on its own (the target of a union offset).
    pub fn create_struct(&mut self, le: &[u8], align: usize) -> Loc {
        self.align(align);
        self.push_bytes(le);
        Loc(self.size() as u32)
    }

    /// `StartTable`: begins a table; add its fields, then [`Builder::end_table`].
    pub fn start_table(&mut self) {
        self.fields.clear();
        self.max_voffset = 0;
        self.table_start = self.size();
    }

    fn track_field(&mut self, slot: u16, loc: usize) {
        let voffset = 4 + 2 * slot;
        self.fields.push((loc, voffset));
        self.max_voffset = self.max_voffset.max(voffset);
    }

    /// `AddElement`: a scalar field, left out when it equals its default.
    pub fn add_scalar<const N: usize>(&mut self, slot: u16, le: [u8; N], default: [u8; N]) {
        if le == default {
            return;
        }
        let loc = self.push_scalar(le);
        self.track_field(slot, loc);
    }

    /// A `uint` field in vtable slot `slot`, left out when it equals `default`.
    pub fn add_u32(&mut self, slot: u16, v: u32, default: u32) {
        self.add_scalar(slot, v.to_le_bytes(), default.to_le_bytes());
    }

    /// An `int` field in vtable slot `slot`, left out when it equals `default`.
    pub fn add_i32(&mut self, slot: u16, v: i32, default: i32) {
        self.add_scalar(slot, v.to_le_bytes(), default.to_le_bytes());
    }

    /// A `ubyte` (or `bool`, or `ubyte` enum) field in vtable slot `slot`, left out when it
    /// equals `default`.
    pub fn add_u8(&mut self, slot: u16, v: u8, default: u8) {
        self.add_scalar(slot, [v], [default]);
    }

    /// A `double` field in vtable slot `slot`, left out when it equals `default`.
    pub fn add_f64(&mut self, slot: u16, v: f64, default: f64) {
        self.add_scalar(slot, v.to_le_bytes(), default.to_le_bytes());
    }

    /// `AddOffset`: left out when absent.
    pub fn add_offset(&mut self, slot: u16, target: Option<Loc>) {
        if let Some(target) = target {
            let loc = self.push_offset(target);
            self.track_field(slot, loc);
        }
    }

    /// `EndTable`: writes the table's vtable offset and its vtable, or points at an
    /// identical earlier vtable instead.
    pub fn end_table(&mut self) -> Loc {
        let table_loc = self.push_scalar(0i32.to_le_bytes());
        let vt_size = (self.max_voffset + 2).max(4);
        let mut vt = vec![0u16; vt_size as usize / 2];
        vt[0] = vt_size;
        vt[1] = (table_loc - self.table_start) as u16;
        for &(loc, voffset) in &self.fields {
            vt[voffset as usize / 2] = (table_loc - loc) as u16;
        }
        let vt_bytes: Vec<u8> = vt.iter().flat_map(|x| x.to_le_bytes()).collect();
        let vt_loc = match self.vtables.get(&vt_bytes) {
            Some(&earlier) => earlier,
            None => {
                self.push_bytes(&vt_bytes);
                let here = self.size();
                self.vtables.insert(vt_bytes, here);
                here
            }
        };
        self.write_at(table_loc, (vt_loc as i32 - table_loc as i32).to_le_bytes());
        self.fields.clear();
        Loc(table_loc as u32)
    }

    /// `Finish` with a file identifier: aligns the whole buffer to the largest alignment
    /// used and returns the final bytes.
    pub fn finish(mut self, root: Loc, identifier: &[u8; 4]) -> Vec<u8> {
        self.pre_align(UOFFSET + identifier.len(), self.minalign);
        self.push_bytes(identifier);
        self.push_offset(root);
        self.rev.reverse();
        self.rev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_vectors_are_not_aligned() {
        let mut b = Builder::new();
        b.create_string(b"abc"); // size 8
        b.pad(4); // size 12: an 8-aligned vector would need padding
        let before = b.size();
        b.create_vector_i64(&[]);
        assert_eq!(b.size(), before + 4, "only the length is written");
        b.create_vector_i64(&[1]);
        assert_eq!(
            b.size() % 8,
            4,
            "a non-empty one is: its data at a multiple of 8"
        );
    }

    #[test]
    fn shared_strings_and_vtables_are_reused() {
        let mut b = Builder::new();
        let a = b.create_shared_string(b"name");
        let size = b.size();
        assert_eq!(b.create_shared_string(b"name"), a);
        assert_eq!(b.size(), size);
        assert_ne!(b.create_string(b"name"), a);
        let table = |b: &mut Builder, v: u32| {
            // Two u32 fields: an 8-byte vtable keeps the 4-byte alignment, so both
            // tables start alike (the table size in a vtable counts leading padding).
            b.start_table();
            b.add_u32(1, v, 0);
            b.add_u32(0, 7, 0);
            b.end_table()
        };
        table(&mut b, 1);
        assert_eq!(b.vtables.len(), 1);
        let size = b.size();
        table(&mut b, 2);
        assert_eq!(
            b.vtables.len(),
            1,
            "the second table shares the first one's vtable"
        );
        assert_eq!(b.size() - size, 12, "two values and the vtable offset only");
        table(&mut b, 0);
        assert_eq!(
            b.vtables.len(),
            2,
            "a default-valued field is left out: new layout"
        );
    }

    #[test]
    fn reads_back_with_the_generated_code() {
        // An IValue table holding a String: enough to check offsets and vtables.
        use crate::flatbuffer::generated::mobile_bytecode as fb;
        let mut b = Builder::new();
        b.start_table();
        let none = b.end_table();
        let s = b.create_shared_string(b"hello");
        b.start_table();
        b.add_offset(0, Some(s));
        let string = b.end_table();
        b.start_table();
        b.add_offset(1, Some(string));
        b.add_u8(0, 6, 0);
        let iv = b.end_table();
        let ivalues = b.create_vector_offsets(&[none, iv]);
        b.start_table();
        b.add_offset(4, Some(ivalues));
        b.add_u32(0, 9, 0);
        let root = b.end_table();
        let bytes = b.finish(root, b"PTMF");
        assert_eq!(&bytes[4..8], b"PTMF");
        let m = fb::root_as_module(&bytes).unwrap();
        assert_eq!(m.bytecode_version(), 9);
        let ivs = m.ivalues().unwrap();
        assert_eq!(ivs.len(), 2);
        assert_eq!(ivs.get(0).val_type(), fb::IValueUnion::NONE);
        assert_eq!(
            ivs.get(1).val_as_string().and_then(|s| s.data()),
            Some("hello")
        );
    }
}

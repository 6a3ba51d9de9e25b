//! What flatc's Rust output cannot do for the PTMF schema (see `schema/README.md`):
//!
//! * the struct members of `IValueUnion` (`Int`, `Bool`, `Double`, `ComplexDouble`):
//!   their tags, verification, reading and writing;
//! * rejecting union tags the schema does not define (the generated verifier lets them
//!   through);
//! * `force_align` on `StorageData.data`: vectors whose bytes start at a chosen alignment.

use std::borrow::Cow;

use flatbuffers::{
    Allocator, FlatBufferBuilder, Follow, ForwardsUOffset, InvalidFlatbuffer, Push, Vector,
    Verifiable, Verifier, VerifierOptions, WIPOffset,
};

use super::generated::mobile_bytecode::{
    Bool, Bytes8, ComplexDouble, Double, IValue, IValueArgs, IValueUnion, Int,
};

/// The tags of the struct members, left out of the derived schema and so not generated.
#[allow(non_upper_case_globals)]
impl IValueUnion {
    /// Tag of the `Int` struct (`long`).
    pub const Int: Self = Self(1);
    /// Tag of the `Bool` struct.
    pub const Bool: Self = Self(2);
    /// Tag of the `Double` struct.
    pub const Double: Self = Self(3);
    /// Tag of the `ComplexDouble` struct (real, imag).
    pub const ComplexDouble: Self = Self(4);
}

/// A struct member of `IValueUnion`.
pub trait StructVariant: Push + Verifiable + for<'a> Follow<'a, Inner = &'a Self> {
    /// The member's `IValueUnion` tag.
    const TAG: IValueUnion;
    /// The struct's schema name, for messages.
    const NAME: &'static str;
    /// Alignment in the buffer, checked as PyTorch's C++ verifier does (the Rust
    /// verifier does not check struct alignment).
    const ALIGN: usize;
    /// The Rust value it carries.
    type Value;
    /// The carried value.
    fn value(&self) -> Self::Value;
}

impl StructVariant for Int {
    const TAG: IValueUnion = IValueUnion::Int;
    const NAME: &'static str = "Int";
    const ALIGN: usize = 8;
    type Value = i64;
    fn value(&self) -> i64 {
        self.int_val()
    }
}

impl StructVariant for Bool {
    const TAG: IValueUnion = IValueUnion::Bool;
    const NAME: &'static str = "Bool";
    const ALIGN: usize = 1;
    type Value = bool;
    fn value(&self) -> bool {
        self.bool_val()
    }
}

impl StructVariant for Double {
    const TAG: IValueUnion = IValueUnion::Double;
    const NAME: &'static str = "Double";
    const ALIGN: usize = 8;
    type Value = f64;
    fn value(&self) -> f64 {
        self.double_val()
    }
}

impl StructVariant for ComplexDouble {
    const TAG: IValueUnion = IValueUnion::ComplexDouble;
    const NAME: &'static str = "ComplexDouble";
    const ALIGN: usize = 8;
    type Value = (f64, f64);
    fn value(&self) -> (f64, f64) {
        (self.real(), self.imag())
    }
}

/// Verifies the union value of `iv` as a `T`: the offset and the struct's bytes are in
/// the buffer and the struct is aligned.
fn verify_variant<T: StructVariant>(iv: &IValue<'_>) -> Result<(), InvalidFlatbuffer> {
    let opts = VerifierOptions::default();
    let mut v = Verifier::new(&opts, iv._tab.buf());
    let mut t = v.visit_table(iv._tab.loc())?;
    let Some(pos) = t.deref(IValue::VT_VAL)? else {
        return Err(InvalidFlatbuffer::MissingRequiredField {
            required: Cow::Borrowed("IValue.val"),
            error_trace: Default::default(),
        });
    };
    let v = t.verifier();
    v.verify_union_variant::<ForwardsUOffset<T>>(T::NAME, pos)?;
    let target = pos + v.get_uoffset(pos)? as usize;
    if !target.is_multiple_of(T::ALIGN) {
        return Err(InvalidFlatbuffer::Unaligned {
            position: target,
            unaligned_type: Cow::Borrowed(T::NAME),
            error_trace: Default::default(),
        });
    }
    Ok(())
}

/// Verifies the struct member an `IValue` points at, if its tag is one (1..=4); other
/// tags are left alone (tables are covered by the generated verifier).
///
/// `iv` must come from a buffer that passed the generated verifier (`root_as_module*`):
/// that checked the `IValue` table itself but skipped its struct payload.
pub fn verify_struct_variant(iv: &IValue<'_>) -> Result<(), InvalidFlatbuffer> {
    match iv.val_type() {
        IValueUnion::Int => verify_variant::<Int>(iv),
        IValueUnion::Bool => verify_variant::<Bool>(iv),
        IValueUnion::Double => verify_variant::<Double>(iv),
        IValueUnion::ComplexDouble => verify_variant::<ComplexDouble>(iv),
        _ => Ok(()),
    }
}

/// The union check every reader must do per `IValue` after `root_as_module*`: the tag is
/// one the schema defines (0 NONE, 1..=16) and a struct member is verified.
/// `buf` is the buffer the module was read from.
pub fn check_ivalue_union(buf: &[u8], iv: &IValue<'_>) -> Result<(), String> {
    let tab = iv._tab.buf();
    if tab.as_ptr() != buf.as_ptr() || tab.len() != buf.len() {
        return Err("IValue does not belong to this buffer".into());
    }
    let tag = iv.val_type().0;
    if tag > IValueUnion::ENUM_MAX {
        return Err(format!(
            "unknown IValueUnion tag {tag} (the schema defines 0..={})",
            IValueUnion::ENUM_MAX
        ));
    }
    verify_struct_variant(iv).map_err(|e| format!("invalid IValueUnion tag {tag} value: {e}"))
}

/// The value of a struct member of type `T`, or None if `iv` holds another type or the
/// value does not verify. Safe for any `IValue` obtained from a verified buffer.
pub fn read_struct_union<T: StructVariant>(iv: &IValue<'_>) -> Option<T::Value> {
    if iv.val_type() != T::TAG || verify_variant::<T>(iv).is_err() {
        return None;
    }
    // SAFETY: verify_variant just checked that the VT_VAL slot holds an offset to a
    // whole `T` inside the buffer.
    let s = unsafe { iv._tab.get::<ForwardsUOffset<T>>(IValue::VT_VAL, None) }?;
    Some(s.value())
}

/// The `Int` an `IValue` holds, if it holds a verified one.
pub fn read_int(iv: &IValue<'_>) -> Option<i64> {
    read_struct_union::<Int>(iv)
}

/// The `Bool` an `IValue` holds, if it holds a verified one.
pub fn read_bool(iv: &IValue<'_>) -> Option<bool> {
    read_struct_union::<Bool>(iv)
}

/// The `Double` an `IValue` holds, if it holds a verified one.
pub fn read_double(iv: &IValue<'_>) -> Option<f64> {
    read_struct_union::<Double>(iv)
}

/// `(real, imag)`.
pub fn read_complex(iv: &IValue<'_>) -> Option<(f64, f64)> {
    read_struct_union::<ComplexDouble>(iv)
}

/// Writes a struct member and its `IValue` table, in that order (as PyTorch does).
pub fn create_struct_ivalue<'fbb, A: Allocator + 'fbb, T: StructVariant>(
    fbb: &mut FlatBufferBuilder<'fbb, A>,
    value: T,
) -> WIPOffset<IValue<'fbb>> {
    let val = fbb.push(value).as_union_value();
    IValue::create(
        fbb,
        &IValueArgs {
            val_type: T::TAG,
            val: Some(val),
        },
    )
}

/// A byte whose `alignment()` is `A`: passed to `start_vector` it makes the builder pad
/// so that the vector's data starts `A`-aligned, and raises the buffer's final alignment.
struct AlignedByte<const A: usize>(u8);

impl<const A: usize> Push for AlignedByte<A> {
    type Output = u8;
    unsafe fn push(&self, dst: &mut [u8], _written_len: usize) {
        dst[0] = self.0;
    }
    fn alignment() -> flatbuffers::PushAlignment {
        flatbuffers::PushAlignment::new(A)
    }
}

/// Bytes pushed as one unit: copying a chunk at a time instead of byte by byte.
const CHUNK: usize = 256;
struct Chunk<'a>(&'a [u8; CHUNK]);

impl Push for Chunk<'_> {
    type Output = [u8; CHUNK];
    unsafe fn push(&self, dst: &mut [u8], _written_len: usize) {
        dst.copy_from_slice(self.0);
    }
}

fn aligned_bytes<'fbb, A: Allocator + 'fbb, const N: usize>(
    fbb: &mut FlatBufferBuilder<'fbb, A>,
    data: &[u8],
) -> WIPOffset<Vector<'fbb, u8>> {
    // Pads exactly as C++ `ForceVectorAlignment(len, 1, N)` + `CreateVector` do.
    fbb.start_vector::<AlignedByte<N>>(data.len());
    // Back to front: the tail first, then whole chunks from the last one.
    let (chunks, tail) = data.as_chunks::<CHUNK>();
    for &b in tail.iter().rev() {
        fbb.push(b);
    }
    for c in chunks.iter().rev() {
        fbb.push(Chunk(c));
    }
    fbb.end_vector::<u8>(data.len())
}

/// A `[ubyte]` vector whose data starts at a multiple of `align` (a power of two up to
/// 32, flatbuffers' maximum), measured from the buffer end as the builder works; the
/// finished buffer's length becomes a multiple of `align` too, so the data is aligned
/// from the start as well. Emulates `force_align`, which the Rust builder ignores;
/// PyTorch uses 32 for `StorageData.data`.
///
/// # Panics
/// If `align` is not 1, 2, 4, 8, 16 or 32.
pub fn create_aligned_bytes<'fbb, A: Allocator + 'fbb>(
    fbb: &mut FlatBufferBuilder<'fbb, A>,
    data: &[u8],
    align: usize,
) -> WIPOffset<Vector<'fbb, u8>> {
    match align {
        1 => aligned_bytes::<A, 1>(fbb, data),
        2 => aligned_bytes::<A, 2>(fbb, data),
        4 => aligned_bytes::<A, 4>(fbb, data),
        8 => aligned_bytes::<A, 8>(fbb, data),
        16 => aligned_bytes::<A, 16>(fbb, data),
        32 => aligned_bytes::<A, 32>(fbb, data),
        _ => panic!("create_aligned_bytes: alignment {align} is not a power of two <= 32"),
    }
}

/// The `i64` of an 8-byte vector element. Such vectors are typed `[Bytes8]` in the
/// derived Rust schema (alignment 1) because PyTorch leaves empty ones unaligned.
pub fn bytes8_i64(b: &Bytes8) -> i64 {
    i64::from_le_bytes(b.0)
}

/// The `f64` of an 8-byte vector element (see [`bytes8_i64`]).
pub fn bytes8_f64(b: &Bytes8) -> f64 {
    f64::from_le_bytes(b.0)
}

#[cfg(test)]
mod tests {
    use flatbuffers::FlatBufferBuilder;

    use super::*;
    use crate::flatbuffer::generated::mobile_bytecode as fb;

    /// A Module whose `ivalues` are the given values, finished with `PTMF`.
    fn module_with(
        build: impl FnOnce(&mut FlatBufferBuilder<'static>) -> Vec<WIPOffset<IValue<'static>>>,
    ) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();
        let ivs = build(&mut fbb);
        let ivs = fbb.create_vector(&ivs);
        let m = fb::Module::create(
            &mut fbb,
            &fb::ModuleArgs {
                ivalues: Some(ivs),
                ..Default::default()
            },
        );
        fb::finish_module_buffer(&mut fbb, m);
        fbb.finished_data().to_vec()
    }

    fn all_scalars() -> Vec<u8> {
        module_with(|fbb| {
            let none = IValue::create(fbb, &IValueArgs::default());
            let i = create_struct_ivalue(fbb, Int::new(-42));
            let b = create_struct_ivalue(fbb, Bool::new(true));
            let d = create_struct_ivalue(fbb, Double::new(2.5));
            let c = create_struct_ivalue(fbb, ComplexDouble::new(1.0, -3.0));
            let s = fbb.create_string("hi");
            let s = fb::String::create(fbb, &fb::StringArgs { data: Some(s) });
            let s = IValue::create(
                fbb,
                &IValueArgs {
                    val_type: IValueUnion::String,
                    val: Some(s.as_union_value()),
                },
            );
            vec![none, i, b, d, c, s]
        })
    }

    #[test]
    fn struct_variants_round_trip() {
        let buf = all_scalars();
        let m = fb::root_as_module(&buf).unwrap();
        let iv = m.ivalues().unwrap();
        for v in iv.iter() {
            check_ivalue_union(&buf, &v).unwrap();
        }
        let tags: Vec<u8> = iv.iter().map(|v| v.val_type().0).collect();
        assert_eq!(tags, [0, 1, 2, 3, 4, 6]);
        assert_eq!(read_int(&iv.get(1)), Some(-42));
        assert_eq!(read_bool(&iv.get(2)), Some(true));
        assert_eq!(read_double(&iv.get(3)), Some(2.5));
        assert_eq!(read_complex(&iv.get(4)), Some((1.0, -3.0)));
        // A different type, or NONE, reads as None.
        assert_eq!(read_int(&iv.get(2)), None);
        assert_eq!(read_double(&iv.get(0)), None);
        assert_eq!(read_bool(&iv.get(5)), None);
        assert_eq!(iv.get(5).val_as_string().unwrap().data(), Some("hi"));
    }

    /// Byte position of the struct an IValue's union offset points at.
    fn target(buf: &[u8], iv: &IValue<'_>) -> usize {
        let slot = iv._tab.loc() + iv._tab.vtable().get(IValue::VT_VAL) as usize;
        slot + u32::from_le_bytes(buf[slot..slot + 4].try_into().unwrap()) as usize
    }

    #[test]
    fn unknown_tag_is_rejected() {
        let mut buf = all_scalars();
        let tag_pos = {
            let m = fb::root_as_module(&buf).unwrap();
            let iv = m.ivalues().unwrap().get(1);
            iv._tab.loc() + iv._tab.vtable().get(IValue::VT_VAL_TYPE) as usize
        };
        assert_eq!(buf[tag_pos], 1);
        buf[tag_pos] = 17;
        // The generated verifier lets the unknown tag through; our check does not.
        let m = fb::root_as_module(&buf).expect("generated verifier accepts tag 17");
        let err = check_ivalue_union(&buf, &m.ivalues().unwrap().get(1)).unwrap_err();
        assert!(err.contains("unknown IValueUnion tag 17"), "{err}");
    }

    #[test]
    fn out_of_bounds_struct_is_rejected() {
        let mut buf = all_scalars();
        let (slot, pos) = {
            let m = fb::root_as_module(&buf).unwrap();
            let iv = m.ivalues().unwrap().get(4); // ComplexDouble, 16 bytes
            let slot = iv._tab.loc() + iv._tab.vtable().get(IValue::VT_VAL) as usize;
            (slot, target(&buf, &iv))
        };
        // Point the union offset so that the struct would end past the buffer.
        let past = (buf.len() - 8 - slot) as u32;
        buf[slot..slot + 4].copy_from_slice(&past.to_le_bytes());
        assert_ne!(pos, slot + past as usize);
        let m = fb::root_as_module(&buf).expect("generated verifier does not look at structs");
        let iv = m.ivalues().unwrap().get(4);
        let err = check_ivalue_union(&buf, &iv).unwrap_err();
        assert!(err.contains("out of bounds"), "{err}");
        assert_eq!(read_complex(&iv), None);
    }

    #[test]
    fn misaligned_struct_is_rejected() {
        let mut buf = all_scalars();
        let slot = {
            let m = fb::root_as_module(&buf).unwrap();
            let iv = m.ivalues().unwrap().get(1); // Int, 8-aligned
            assert_eq!(target(&buf, &iv) % 8, 0);
            iv._tab.loc() + iv._tab.vtable().get(IValue::VT_VAL) as usize
        };
        let off = u32::from_le_bytes(buf[slot..slot + 4].try_into().unwrap());
        buf[slot..slot + 4].copy_from_slice(&(off + 4).to_le_bytes());
        let m = fb::root_as_module(&buf).unwrap();
        let iv = m.ivalues().unwrap().get(1);
        let err = check_ivalue_union(&buf, &iv).unwrap_err();
        assert!(err.contains("unaligned"), "{err}");
        assert_eq!(read_int(&iv), None);
    }

    #[test]
    fn foreign_buffer_is_rejected() {
        let buf = all_scalars();
        let copy = buf.clone();
        let m = fb::root_as_module(&buf).unwrap();
        assert!(check_ivalue_union(&copy, &m.ivalues().unwrap().get(1)).is_err());
    }

    /// Offset of the vector's data in the finished buffer (after its u32 length).
    fn data_pos(buf: &[u8], v: WIPOffset<Vector<'_, u8>>) -> usize {
        buf.len() - v.value() as usize + 4
    }

    #[test]
    fn aligned_bytes_start_at_multiples_of_align() {
        for align in [1, 2, 4, 8, 16, 32] {
            for len in [0, 1, 3, 8, 31, 32, 33, 255, 256, 257, 1000] {
                for lead in [0, 1, 5] {
                    let data: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
                    let mut fbb = FlatBufferBuilder::new();
                    // Unaligned content before (= after, in the buffer) the vector.
                    for k in 0..lead {
                        fbb.push(k as u8);
                    }
                    let v = create_aligned_bytes(&mut fbb, &data, align);
                    let sd =
                        fb::StorageData::create(&mut fbb, &fb::StorageDataArgs { data: Some(v) });
                    fbb.finish(sd, Some("PTMF"));
                    let buf = fbb.finished_data();
                    let pos = data_pos(buf, v);
                    assert_eq!(pos % align, 0, "align {align} len {len} lead {lead}");
                    assert_eq!(buf.len() % align.max(4), 0);
                    let sd = flatbuffers::root::<fb::StorageData>(buf).unwrap();
                    let got = sd.data().unwrap().bytes();
                    assert_eq!(got, &data[..]);
                    assert_eq!(got.as_ptr() as usize - buf.as_ptr() as usize, pos);
                }
            }
        }
    }

    /// The padding is the smallest possible (what C++ `ForceVectorAlignment` inserts),
    /// and 32 is what PyTorch's storages need: plain `create_vector` only aligns to 4.
    #[test]
    fn aligned_bytes_pad_minimally() {
        let data = [9u8; 16];
        let mut plain = FlatBufferBuilder::new();
        plain.push(1u32);
        let before = plain.unfinished_data().len();
        plain.create_vector(&data);
        assert_eq!(plain.unfinished_data().len() - before, 16 + 4);

        let mut fbb = FlatBufferBuilder::new();
        fbb.push(1u32); // 4 bytes used: 4 + 16 needs 12 bytes of padding to reach 32
        let v = create_aligned_bytes(&mut fbb, &data, 32);
        assert_eq!(v.value() as usize, 4 + 12 + 16 + 4);
        assert_eq!((v.value() as usize - 4) % 32, 0);
    }

    #[test]
    #[should_panic(expected = "not a power of two")]
    fn aligned_bytes_rejects_bad_alignment() {
        create_aligned_bytes(&mut FlatBufferBuilder::new(), &[1], 64);
    }
}

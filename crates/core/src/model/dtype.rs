//! Scalar types: the dtype table shared by the pickle (`<Name>Storage` globals) and the
//! flatbuffer (`TensorMetadata.scalar_type` numbers).

use std::fmt;

macro_rules! scalar_types {
    ($( $variant:ident = $num:literal, $name:literal, $storage:literal, $size:literal; )*) => {
        /// A tensor element type, numbered as PyTorch's `ScalarType`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ScalarType {
            $(
                #[doc = concat!(
                    "`torch.", $name, "`: number ", stringify!($num),
                    ", storage class `", $storage, "`."
                )]
                $variant = $num,
            )*
        }

        impl ScalarType {
            /// Every scalar type, in `ScalarType` number order.
            pub const ALL: &'static [ScalarType] = &[ $( ScalarType::$variant, )* ];

            /// The dtype as PyTorch prints it without `torch.` (e.g. `bfloat16`).
            pub fn name(self) -> &'static str {
                match self { $( ScalarType::$variant => $name, )* }
            }

            /// The storage class name used in pickled persistent ids (e.g. `FloatStorage`).
            pub fn storage_name(self) -> &'static str {
                match self { $( ScalarType::$variant => $storage, )* }
            }

            /// Bytes per element of the storage.
            pub fn element_size(self) -> u64 {
                match self { $( ScalarType::$variant => $size, )* }
            }

            /// The `ScalarType` number (flatbuffer `scalar_type`).
            pub fn number(self) -> i8 {
                self as i8
            }

            /// The scalar type numbered `n` (flatbuffer `scalar_type`), if any.
            pub fn from_number(n: i64) -> Option<Self> {
                match n { $( $num => Some(ScalarType::$variant), )* _ => None }
            }

            /// The scalar type of a storage class name (`FloatStorage`), if any.
            pub fn from_storage_name(s: &str) -> Option<Self> {
                match s { $( $storage => Some(ScalarType::$variant), )* _ => None }
            }

            /// The scalar type of a dtype name without `torch.` (`float32`), if any.
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $( $name => Some(ScalarType::$variant), )* _ => None }
            }
        }
    };
}

scalar_types! {
    UInt8 = 0, "uint8", "ByteStorage", 1;
    Int8 = 1, "int8", "CharStorage", 1;
    Int16 = 2, "int16", "ShortStorage", 2;
    Int32 = 3, "int32", "IntStorage", 4;
    Int64 = 4, "int64", "LongStorage", 8;
    Float16 = 5, "float16", "HalfStorage", 2;
    Float32 = 6, "float32", "FloatStorage", 4;
    Float64 = 7, "float64", "DoubleStorage", 8;
    Complex32 = 8, "complex32", "ComplexHalfStorage", 4;
    Complex64 = 9, "complex64", "ComplexFloatStorage", 8;
    Complex128 = 10, "complex128", "ComplexDoubleStorage", 16;
    Bool = 11, "bool", "BoolStorage", 1;
    QInt8 = 12, "qint8", "QInt8Storage", 1;
    QUInt8 = 13, "quint8", "QUInt8Storage", 1;
    QInt32 = 14, "qint32", "QInt32Storage", 4;
    BFloat16 = 15, "bfloat16", "BFloat16Storage", 2;
    QUInt4x2 = 16, "quint4x2", "QUInt4x2Storage", 1;
    QUInt2x4 = 17, "quint2x4", "QUInt2x4Storage", 1;
    Bits1x8 = 18, "bits1x8", "Bits1x8Storage", 1;
    Bits2x4 = 19, "bits2x4", "Bits2x4Storage", 1;
    Bits4x2 = 20, "bits4x2", "Bits4x2Storage", 1;
    Bits8 = 21, "bits8", "Bits8Storage", 1;
    Bits16 = 22, "bits16", "Bits16Storage", 2;
    Float8E5M2 = 23, "float8_e5m2", "Float8_e5m2Storage", 1;
    Float8E4M3Fn = 24, "float8_e4m3fn", "Float8_e4m3fnStorage", 1;
    Float8E5M2Fnuz = 25, "float8_e5m2fnuz", "Float8_e5m2fnuzStorage", 1;
    Float8E4M3Fnuz = 26, "float8_e4m3fnuz", "Float8_e4m3fnuzStorage", 1;
    UInt16 = 27, "uint16", "UInt16Storage", 2;
    UInt32 = 28, "uint32", "UInt32Storage", 4;
    UInt64 = 29, "uint64", "UInt64Storage", 8;
    UInt1 = 30, "uint1", "UInt1Storage", 1;
    UInt2 = 31, "uint2", "UInt2Storage", 1;
    UInt3 = 32, "uint3", "UInt3Storage", 1;
    UInt4 = 33, "uint4", "UInt4Storage", 1;
    UInt5 = 34, "uint5", "UInt5Storage", 1;
    UInt6 = 35, "uint6", "UInt6Storage", 1;
    UInt7 = 36, "uint7", "UInt7Storage", 1;
    Int1 = 37, "int1", "Int1Storage", 1;
    Int2 = 38, "int2", "Int2Storage", 1;
    Int3 = 39, "int3", "Int3Storage", 1;
    Int4 = 40, "int4", "Int4Storage", 1;
    Int5 = 41, "int5", "Int5Storage", 1;
    Int6 = 42, "int6", "Int6Storage", 1;
    Int7 = 43, "int7", "Int7Storage", 1;
    Float8E8M0Fnu = 44, "float8_e8m0fnu", "Float8_e8m0fnuStorage", 1;
    Float4E2M1FnX2 = 45, "float4_e2m1fn_x2", "Float4_e2m1fn_x2Storage", 1;
}

impl ScalarType {
    /// Whether this is a quantized type (`qint8`, `quint8`, `qint32`, `quint4x2`,
    /// `quint2x4`).
    pub fn is_quantized(self) -> bool {
        matches!(
            self,
            ScalarType::QInt8
                | ScalarType::QUInt8
                | ScalarType::QInt32
                | ScalarType::QUInt4x2
                | ScalarType::QUInt2x4
        )
    }

    /// Whether this is a complex type.
    pub fn is_complex(self) -> bool {
        matches!(
            self,
            ScalarType::Complex32 | ScalarType::Complex64 | ScalarType::Complex128
        )
    }
}

impl fmt::Display for ScalarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ScalarType {
    /// Tensor values per storage element: the sub-byte quantized types pack 2 (`quint4x2`)
    /// or 4 (`quint2x4`) values into each byte, so a view of N values needs only
    /// N / 2 or N / 4 storage elements (PyTorch 2.0 writes them so and loads them back).
    pub fn values_per_element(self) -> u64 {
        match self {
            ScalarType::QUInt4x2 => 2,
            ScalarType::QUInt2x4 => 4,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_dense_and_round_trip() {
        for (i, st) in ScalarType::ALL.iter().enumerate() {
            assert_eq!(st.number() as usize, i);
            assert_eq!(ScalarType::from_number(i as i64), Some(*st));
            assert_eq!(ScalarType::from_storage_name(st.storage_name()), Some(*st));
            assert_eq!(ScalarType::from_name(st.name()), Some(*st));
        }
        assert_eq!(ScalarType::ALL.len(), 46);
    }
}

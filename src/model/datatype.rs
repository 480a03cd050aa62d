//! The twelve KServe v2 datatypes, listed once.
//!
//! [`for_each_datatype!`] is the only list of them: each row gives the [`DataType`] variant,
//! the Rust element type, the v2 name, the ONNX Runtime element type and the bytes per element.
//! The [`DataType`] enum, [`TensorData`](super::TensorData), the per-type dispatch of
//! [`with_type!`] and `with_data!`, the binary encoding and the JSON Schema of the
//! documentation are all generated from it, so adding a datatype is one line here (and the
//! compiler then names every `match` that must learn it).

use std::fmt;

use ort::value::TensorElementType;
use serde::{Serialize, Serializer};

/// Calls `$callback! { $($args)* Variant rust_type, "V2NAME", OrtType, bytes; ... }` with one
/// row per datatype, in declaration order. Helper macros add a leading `@table` argument and
/// match the rows in a rule of their own.
macro_rules! for_each_datatype {
    ($callback:ident $($args:tt)*) => {
        $callback! { $($args)*
            Bool bool, "BOOL", Bool, 1;
            Uint8 u8, "UINT8", Uint8, 1;
            Uint16 u16, "UINT16", Uint16, 2;
            Uint32 u32, "UINT32", Uint32, 4;
            Uint64 u64, "UINT64", Uint64, 8;
            Int8 i8, "INT8", Int8, 1;
            Int16 i16, "INT16", Int16, 2;
            Int32 i32, "INT32", Int32, 4;
            Int64 i64, "INT64", Int64, 8;
            Fp16 half::f16, "FP16", Float16, 2;
            Fp32 f32, "FP32", Float32, 4;
            Fp64 f64, "FP64", Float64, 8;
        }
    };
}
pub(crate) use for_each_datatype;

/// Runs `$body` with the type alias `$t` set to the Rust element type of a [`DataType`].
macro_rules! with_type {
    ($ty:expr, $t:ident => $body:expr) => {
        $crate::model::datatype::for_each_datatype!(with_type @table ($ty, $t, $body))
    };
    (@table ($ty:expr, $t:ident, $body:expr)
        $($variant:ident $rust:ty, $name:literal, $ort:ident, $size:literal;)*) => {
        match $ty {
            $($crate::model::DataType::$variant => {
                type $t = $rust;
                $body
            })*
        }
    };
}
pub(crate) use with_type;

macro_rules! define_datatype {
    ($($variant:ident $rust:ty, $name:literal, $ort:ident, $size:literal;)*) => {
        /// A tensor element type the server accepts and returns, named as in the KServe v2
        /// protocol.
        ///
        /// Serializes as its v2 name (`"FP32"`, `"INT64"`, ...).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DataType {
            $(
                #[doc = concat!("`", stringify!($rust), "`, v2 name `", $name, "`.")]
                $variant,
            )*
        }

        impl DataType {
            /// Every supported element type, in declaration order.
            pub const ALL: [DataType; 12] = [$(DataType::$variant,)*];

            /// The KServe v2 name, such as `"FP32"`.
            ///
            /// ```
            /// use tinyserve::model::DataType;
            /// assert_eq!(DataType::Uint8.as_str(), "UINT8");
            /// ```
            pub fn as_str(self) -> &'static str {
                match self {
                    $(DataType::$variant => $name,)*
                }
            }

            /// The type matching an ONNX Runtime element type, or `None` for the ones the
            /// server does not support (string, bfloat16, complex, 8/4/2-bit types...).
            pub fn from_ort(ty: TensorElementType) -> Option<DataType> {
                match ty {
                    $(TensorElementType::$ort => Some(DataType::$variant),)*
                    _ => None,
                }
            }

            /// The ONNX Runtime element type for this type.
            pub fn to_ort(self) -> TensorElementType {
                match self {
                    $(DataType::$variant => TensorElementType::$ort,)*
                }
            }

            /// Bytes per element in the binary tensor encoding (`BOOL` takes one byte).
            pub(crate) fn size(self) -> usize {
                match self {
                    $(DataType::$variant => $size,)*
                }
            }
        }
    };
}

for_each_datatype!(define_datatype);

impl DataType {
    /// The type with this exact (case-sensitive) KServe v2 name, or `None`.
    ///
    /// ```
    /// use tinyserve::model::DataType;
    /// assert_eq!(DataType::from_v2("FP32"), Some(DataType::Fp32));
    /// assert_eq!(DataType::from_v2("fp32"), None);
    /// ```
    pub fn from_v2(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|ty| ty.as_str() == name)
    }

    /// Whether this is a floating-point type (whose NaN and infinities are written as `null`).
    pub(crate) fn is_float(self) -> bool {
        matches!(self, DataType::Fp16 | DataType::Fp32 | DataType::Fp64)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DataType {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_names_round_trip_and_are_case_sensitive() {
        for ty in DataType::ALL {
            assert_eq!(DataType::from_v2(ty.as_str()), Some(ty));
            assert_eq!(ty.to_string(), ty.as_str());
            assert_eq!(DataType::from_v2(&ty.as_str().to_lowercase()), None);
            assert_eq!(DataType::from_ort(ty.to_ort()), Some(ty));
        }
        assert_eq!(DataType::from_v2("BYTES"), None);
        assert_eq!(DataType::from_v2("BF16"), None);
        assert_eq!(DataType::from_v2(""), None);
    }

    #[test]
    fn all_lists_each_type_once() {
        let mut names: Vec<_> = DataType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 12);
    }

    #[test]
    fn sizes_are_the_rust_sizes() {
        for ty in DataType::ALL {
            let rust = with_type!(ty, T => std::mem::size_of::<T>());
            assert_eq!(ty.size(), rust, "{ty}");
        }
    }

    #[test]
    fn unsupported_ort_types_map_to_none() {
        for ty in [
            TensorElementType::String,
            TensorElementType::Bfloat16,
            TensorElementType::Complex64,
            TensorElementType::Float8E4M3FN,
            TensorElementType::Int4,
            TensorElementType::Undefined,
        ] {
            assert_eq!(DataType::from_ort(ty), None, "{ty:?}");
        }
    }
}

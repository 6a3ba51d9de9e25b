//! The format-agnostic model: values, tensors over shared storages, declared types and
//! the compilation unit. Codecs (`pickle`, `code`, `zip_archive`) read into and write from it.

pub mod bytecode;
pub mod compilation_unit;
pub mod compose;
pub mod device;
pub mod dtype;
pub mod mangle;
pub mod module;
pub mod setstate;
pub mod tensor;
pub mod torchbind;
pub mod type_match;
pub mod types;
pub mod value;

pub use compilation_unit::{CompilationUnit, SourceFile};
pub use device::Device;
pub use dtype::ScalarType;
pub use module::ScriptModule;
pub use tensor::{Dims, QScheme, Quantization, Sparse, SparseLayout, Storage, Tensor};
pub use types::{
    AttributeDecl, ClassDef, ClassKind, ConstantDecl, Definition, EnumDef, FunctionDef,
    InterfaceDef, MethodDef, NamedTupleDef, Param, QualifiedName, Signature, TypeExpr,
};
pub use value::{Dict, EnumValue, IValue, List, Object, ObjectState, Str, Tuple};

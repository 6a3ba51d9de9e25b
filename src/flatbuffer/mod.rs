//! The mobile flatbuffer format (`PTMF`, ../shared/spec/flatbuffer.md): a flatbuffer
//! with root table `Module` and file identifier `PTMF`, written by
//! `torch.jit.save_jit_module_to_flatbuffer` and read by the mobile runtime.
//!
//! * [`generated`]: flatc's Rust code for the schema in `schema/` (committed; regenerate
//!   with `bash scripts/regen-flatbuffers.sh`);
//! * [`support`]: what the generated code cannot do for this schema (struct members of
//!   the union, unknown union tags, 32-byte aligned storage bytes); `schema/README.md`
//!   explains why.

pub mod builder;
pub mod generated;
pub mod read;
pub mod support;
pub mod write;

pub use read::{MobileModule, is_flatbuffer, read_flatbuffer};
pub use write::{NameMode, WriteOptions, write_flatbuffer};

//! Hostile inputs: truncated, corrupt, malicious and huge files in both formats get a clear
//! verdict (rule, record, offset), never a panic, hang or unbounded allocation.
//!
//! One test binary per topic (each module was its own binary before); `cargo test --test hostile
//! MODULE::` runs one module.

#[path = "../common/mod.rs"]
mod common;

mod bombs;
mod container_gaps;
mod extract;
mod hostile_shapes;
mod malformed;
mod malformed_flatbuffer;
mod shared_values;

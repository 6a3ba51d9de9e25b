//! The floors of the whole-process benchmark (`oracle/bench/bench_cli.py`): one pass of
//! the work a command cannot avoid, over the whole file, in a process of its own, on one
//! thread. `check` must CRC every record's bytes; `dump` and `diff` hash every tensor's
//! bytes with SHA-256 (`diff` those of both files).
//!
//!     cargo build --release --example floor
//!     target/release/examples/floor crc32|sha256 FILE

use sha2::{Digest, Sha256};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(what), Some(path)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: floor crc32|sha256 FILE");
        std::process::exit(2);
    };
    let data = ptconform_core::jit::map_file(std::path::Path::new(path)).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    });
    match what.as_str() {
        "crc32" => println!("{:08x}", crc32fast::hash(&data)),
        "sha256" => println!("{:x}", Sha256::digest(&data)),
        _ => {
            eprintln!("usage: floor crc32|sha256 FILE");
            std::process::exit(2);
        }
    }
}

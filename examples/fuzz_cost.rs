//! The cost of one execution of a fuzz target, measured outside libFuzzer: runs the
//! target's library function over every seed in `corpus/TARGET/`, `ROUNDS` times, and
//! prints executions per second. Under `valgrind --tool=callgrind` the instruction count
//! divided by the executions is a machine-independent cost per input, for before/after
//! comparisons on a busy machine.
//!
//!     cargo build --release --example fuzz_cost
//!     target/release/examples/fuzz_cost zip_load 20 [DIR]
//!
//! DIR (default `corpus/TARGET/`) may hold any inputs, such as a campaign's corpus.

use std::time::Instant;

// The fuzz targets' allocator (fuzz/Cargo.toml's default feature), so costs compare.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), rounds) = (
        args.get(1),
        args.get(2)
            .and_then(|r| r.parse::<usize>().ok())
            .unwrap_or(10),
    ) else {
        eprintln!("usage: fuzz_cost TARGET [ROUNDS]");
        std::process::exit(2);
    };
    let Some((_, target)) = ptconform_gen::fuzz_support::TARGETS
        .iter()
        .find(|(n, _)| n == name)
    else {
        eprintln!("no target {name}");
        std::process::exit(2);
    };
    let dir = match args.get(3) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(name),
    };
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    seeds.sort();
    let start = Instant::now();
    for _ in 0..rounds {
        for s in &seeds {
            target(s);
        }
    }
    let execs = rounds * seeds.len();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name}: {execs} executions over {} seeds in {secs:.2} s: {:.0} execs/s",
        seeds.len(),
        execs as f64 / secs
    );
}

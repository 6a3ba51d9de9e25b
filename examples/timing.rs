//! In-process timings for `oracle/bench/bench_compare.py` (and for profiling with `perf`):
//!
//!     cargo run --release --example timing -- load FILE [RUNS]
//!     cargo run --release --example timing -- save FILE.pt OUT.pt [RUNS]
//!     cargo run --release --example timing -- memory FILE
//!
//! One warm-up, then RUNS (default 5) timed calls; prints the median in milliseconds.
//! `load` is `jit::load` (zip or flatbuffer, memory-mapped) including dropping the
//! module; `save` writes a zip archive of the loaded module to OUT (atomically, not
//! fsync'd, as `zip_archive::save` does by default).
use std::path::Path;
use std::time::Instant;

// As the `ptconform` binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = |i: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(5usize);
    let ms = match args.first().map(String::as_str) {
        Some("load") => {
            let file = Path::new(&args[1]);
            median_ms(runs(2), || {
                let m = ptconform::jit::load(file, None, None).expect("load");
                std::hint::black_box(m);
            })
        }
        Some("save") => {
            let m = ptconform::jit::load(Path::new(&args[1]), None, None).expect("load");
            let out = Path::new(&args[2]);
            median_ms(runs(3), || {
                ptconform::zip_archive::save::save(
                    &m,
                    out,
                    &Default::default(),
                    &Default::default(),
                )
                .expect("save")
            })
        }
        Some("memory") => {
            // Memory with the module loaded: anonymous (what the load allocated) apart from
            // file-backed pages of the memory map (shared with the page cache; the kernel
            // may map whole large folios around each touched byte).
            let m = ptconform::jit::load(Path::new(&args[1]), None, None).expect("load");
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            for line in status.lines() {
                if ["VmHWM", "RssAnon", "RssFile"]
                    .iter()
                    .any(|k| line.starts_with(k))
                {
                    println!("{}", line.split_whitespace().collect::<Vec<_>>().join(" "));
                }
            }
            std::hint::black_box(m);
            return;
        }
        _ => {
            eprintln!("usage: timing load FILE [RUNS] | save FILE.pt OUT.pt [RUNS] | memory FILE");
            std::process::exit(2);
        }
    };
    println!("{ms:.3}");
}

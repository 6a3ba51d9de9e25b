use clap::Parser;

// The loaders allocate many small values (a tensor's sizes, strides, storage and so on);
// mimalloc measured 1.5-3x faster loads than the system allocator (README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Temporaries of an interrupted write are removed, not left behind.
    ptconform_core::atomic_file::remove_temporaries_on_signals();
    let cli = ptconform::cli::Cli::parse();
    std::process::exit(ptconform::cli::run(cli));
}

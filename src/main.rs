use clap::Parser;

// The loaders allocate many small values (a tensor's sizes, strides, storage and so on);
// mimalloc measured 1.5-3x faster loads than the system allocator (README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = ptconform::cli::Cli::parse();
    std::process::exit(ptconform::cli::run(cli));
}

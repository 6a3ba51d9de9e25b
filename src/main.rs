use clap::Parser;

// The loaders allocate many small values (a tensor's sizes, strides, storage and so on);
// mimalloc measured 1.5-3x faster loads than the system allocator (README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // A run touches a few MiB of mimalloc's arenas; with transparent huge pages allowed,
    // the first touch of each 2 MiB region zeroes all of it, which was a third of a whole
    // `inspect` of the 500-class benchmark. Disabling them before the first large
    // allocation keeps faults at 4 KiB (the kernel checks this flag at each fault).
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process's memory map.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    // Temporaries of an interrupted write are removed, not left behind.
    ptconform_core::atomic_file::remove_temporaries_on_signals();
    let cli = ptconform::cli::Cli::parse();
    std::process::exit(ptconform::cli::run(cli));
}

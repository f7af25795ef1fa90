//! The `pockestrator` binary: everything lives in the library; this only
//! picks the allocator and hands the process over to the command-line
//! entry point.

/// mimalloc, not the system allocator: the daemon's big transient
/// allocations (a list of ten thousand instances, a recovery of as many)
/// would otherwise stay in glibc's arenas as resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pockestrator::cli::main()
}

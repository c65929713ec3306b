//! The `multiguna` binary: parse arguments, run, turn errors into one line and an exit code.

/// mimalloc rather than glibc's malloc: the switch allocates and frees small buffers on
/// every thread all the time, and glibc's arena locking and free-list consolidation were
/// ~8% of its CPU under load (docs/performance.md, session 6).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    multiguna::cli::main()
}

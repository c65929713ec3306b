//! The `multiguna` binary: parse arguments, run, turn errors into one line and an exit code.

fn main() -> std::process::ExitCode {
    multiguna::cli::main()
}

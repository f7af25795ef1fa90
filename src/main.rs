//! The `pockestrator` binary: everything lives in the library; this only
//! hands the process over to the command-line entry point.

fn main() -> std::process::ExitCode {
    pockestrator::cli::main()
}

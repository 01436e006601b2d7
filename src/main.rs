//! The `fedge` binary's entry point: the allocator and a call into the
//! command line (src/cli), which parses arguments and sets exit codes.
//!
//! Owns nothing else; it never holds a subcommand's code.

mod cli;

use std::process::ExitCode;

/// mimalloc: the edge allocates and frees small buffers for every message;
/// glibc's allocator spent ~8% of the relay's CPU on that (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::main()
}

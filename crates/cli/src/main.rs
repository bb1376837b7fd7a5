//! The `sealtrail` binary. A shim: everything happens in [`sealtrail::startup`]-style modules.

mod commands;

fn main() -> std::process::ExitCode {
    commands::startup()
}

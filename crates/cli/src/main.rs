//! The `sealtrail` binary. A shim: everything happens in `commands::startup`.

mod commands;

/// mimalloc instead of glibc malloc: the ingest path allocates per field of every event from
/// several threads, and glibc's arenas showed up as a fifth of the server's profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    commands::startup()
}

//! The `lookout` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    match lookout::cmd::parse() {
        Ok(cli) => cli.execute(),
        Err(status) => status,
    }
}

/// glibc gives every thread that allocates its own malloc arena (up to
/// eight per core), and a long-running daemon whose tokio workers and
/// blocking threads take turns allocating keeps megabytes of freed memory in
/// each. Two arenas are plenty for a monitor on a small machine.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

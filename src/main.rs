//! The `ehds-prep` command line: a thin front over the library. The subcommands are in `cli/`,
//! one file each; this file sets up the process (signals, memory images, allocator, panics).

mod cli;

use std::process::ExitCode;

use ehds_prep::error::exit;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc hands freed pages back to the OS a second after they were last used: kept for ever,
/// they piled up as fragments over a run, so that the peak grew with the extract (hospital stays,
/// 1.05M / 3.15M / 6.3M rows: 169 / 199 / 236 MB kept for ever, 133 / 145 / 145–164 MB with the
/// decay, at the same wall and CPU time: 7.6 s for 6.3M rows).
/// A thin pointer to a NUL-terminated string, as jemalloc's `malloc_conf` expects.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 37] = b"dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    // A closed standard output (`ehds-prep permit-schema | head -1`) ends the process quietly, as
    // the shell expects of a command line tool, rather than as a failed print.
    // SAFETY: setting a signal's disposition to its default has no precondition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    forbid_memory_images();
    // A panic is a bug: say so, and end with the internal-error code rather than Rust's 101.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        eprintln!(
            "error: internal error{at}: the engine panicked; nothing was committed. Please report \
             it with the command and the permit (never the data or a key)."
        );
    }));
    match std::panic::catch_unwind(cli::run) {
        Ok(code) => code,
        Err(_) => ExitCode::from(exit::INTERNAL as u8),
    }
}

/// No core dump of this process, and no other process of the same user attaching to it: a memory
/// image of a run holds the domain keys' HMAC states, enough to compute every pseudonym.
fn forbid_memory_images() {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct given; prctl(PR_SET_DUMPABLE, 0) takes no pointer.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

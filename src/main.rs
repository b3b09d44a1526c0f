//! `image-scanner-operator`: runs the operator, or one of the helper subcommands.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use image_scanner::config::{Cli, Command};

// mimalloc instead of the C library's allocator: glibc's per-thread arenas kept about 3.5x the
// live heap resident at 10,000 pods (docs/performance.md), and musl's allocator (the static
// image) is slow under contention. mimalloc returns freed pages and behaves the same on both.
// `--features system-allocator` keeps the C library's allocator, so that heap profilers that
// hook malloc (heaptrack) see every allocation.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Allocator settings for a long-running controller whose heap grows in bursts (initial lists,
/// scan results) and then stays flat: give freed memory back at once, and keep transparent huge
/// pages out of the resident set. Together they cut the operator's RSS at 10,000 pods by almost
/// a third (figures in docs/performance.md, "What dominates memory").
#[cfg(not(feature = "system-allocator"))]
mod allocator {
    use std::ffi::{c_int, c_long};

    // SAFETY: both are plain C functions of the mimalloc library the global allocator links.
    unsafe extern "C" {
        fn mi_option_get(option: c_int) -> c_long;
        fn mi_option_set(option: c_int, value: c_long);
    }

    /// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (libmimalloc-sys 0.1.49), and its
    /// default. Changed only while it still reads as that default: a renumbered option, or a
    /// value set through `MIMALLOC_PURGE_DELAY`, is left alone.
    const PURGE_DELAY: c_int = 15;
    const PURGE_DELAY_DEFAULT: c_long = 1000;

    pub fn tune() {
        // SAFETY: option setters are thread-safe and take effect for later frees.
        unsafe {
            if mi_option_get(PURGE_DELAY) == PURGE_DELAY_DEFAULT {
                mi_option_set(PURGE_DELAY, 0);
            }
        }
        // Under THP "always" the kernel backs mimalloc's aligned regions with 2 MiB pages even
        // without madvise (the `no_thp` build only stops mimalloc asking for them).
        // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this process.
        #[cfg(target_os = "linux")]
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

#[allow(clippy::disallowed_methods)] // main is the shell's entry point; it may read the environment.
fn main() -> ExitCode {
    #[cfg(not(feature = "system-allocator"))]
    allocator::tune();
    if std::env::var("HELP").is_ok_and(|v| v == "true") {
        use clap::CommandFactory;
        let _ = Cli::command().print_long_help();
        return ExitCode::SUCCESS;
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line, like every other configuration error.
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or("invalid command line");
            eprintln!("{first}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::Crd { plural }) => {
            match image_scanner::crd::CRDS.iter().find(|(p, _)| *p == plural) {
                Some((_, yaml)) => {
                    print!("{}", yaml());
                    ExitCode::SUCCESS
                }
                // clap allows only the names of CRDS.
                None => ExitCode::from(2),
            }
        }
        Some(Command::Report(args)) => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match image_scanner::report_cli::run(&args, &mut std::io::stdin(), &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::CheckConfig(args)) => match args.validate() {
            Ok(config) => {
                let _ = writeln!(std::io::stdout(), "{config:#?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        None => match cli.operator.validate() {
            Ok(config) => match run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "operator stopped");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
    }
}

/// Runs the operator on a multi-threaded runtime until a termination signal.
fn run(config: image_scanner::config::OperatorConfig) -> anyhow::Result<()> {
    image_scanner::shell::logging::init(&config.log);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting image-scanner-operator"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(image_scanner::shell::runtime::run(config))?;
    Ok(())
}

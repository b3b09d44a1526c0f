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

#[allow(clippy::disallowed_methods)] // main is the shell's entry point; it may read the environment.
fn main() -> ExitCode {
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
        Some(Command::Crd) => {
            print!("{}", image_scanner::crd::ContainerImageScan::crd_yaml());
            ExitCode::SUCCESS
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

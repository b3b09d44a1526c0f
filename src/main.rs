//! `image-scanner-operator`: runs the operator, or one of the helper subcommands.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use image_scanner::config::{Cli, Command};

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
        Some(Command::CheckConfig) => match cli.operator.validate() {
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
            Ok(_config) => {
                eprintln!("the operator loop is not wired yet");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
    }
}

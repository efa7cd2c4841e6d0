//! `shoal`: parse the command line, run the command on a Tokio runtime, report errors.

use std::error::Error as _;
use std::process::ExitCode;

use clap::Parser;
use shoal_cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Dev(args) = cli.command {
        return shoal_cli::run_dev(args);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(shoal_cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A `CliError`'s message already includes its direct source; add the deeper
            // causes (for HTTP errors: connection refused, timed out, …).
            let mut message = format!("error: {e}");
            let mut source = e.source().and_then(|s| s.source());
            while let Some(s) = source {
                message.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

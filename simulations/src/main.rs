//! `shoal-sim`: runs simulation scenarios and parameter sweeps.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use shoal_sim::{Scenario, quantile};

#[derive(Parser)]
#[command(
    name = "shoal-sim",
    version,
    about = "Simulate a Shoal swarm on the real engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one scenario; prints the figures and writes CSV and SVG files.
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Overrides, e.g. `--set engine.pipeline_depth=8 --set piece_length=16MiB`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Where the CSV and SVG files go.
        #[arg(long, default_value = "target/sim")]
        out: PathBuf,
    },
    /// Runs a scenario once per value of one parameter; prints a table.
    Sweep {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// The parameter, e.g. `engine.max_connections`.
        #[arg(long)]
        param: String,
        /// Its values, comma-separated, e.g. `5,10,20`.
        #[arg(long, value_delimiter = ',')]
        values: Vec<String>,
        /// Further fixed overrides.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            scenario,
            overrides,
            out,
        } => {
            let s = Scenario::load(&scenario, &overrides)?;
            let start = Instant::now();
            let outcome = shoal_sim::run(&s)?;
            let files = outcome.write_files(&out).context("writing results")?;
            for f in files {
                println!("wrote {}", f.display());
            }
            print!("{}", outcome.text(start.elapsed()));
        }
        Command::Sweep {
            scenario,
            param,
            values,
            overrides,
        } => {
            println!(
                "{param:>28} | p50   | p90   | p99   | p99.9 | max   | origin copies | dup   | wall s"
            );
            for v in values {
                let mut o = overrides.clone();
                o.push(format!("{param}={v}"));
                let s = Scenario::load(&scenario, &o)?;
                let start = Instant::now();
                let outcome = shoal_sim::run(&s)?;
                let r = outcome.summary();
                let q = |p| quantile(&r.ratios, p);
                println!(
                    "{v:>28} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:>13.2} | {:.3} | {:.1}{}",
                    q(0.5),
                    q(0.9),
                    q(0.99),
                    q(0.999),
                    q(1.0),
                    r.origin_egress as f64 / outcome.blob_bytes as f64,
                    r.duplication,
                    start.elapsed().as_secs_f64(),
                    if r.finished < r.expected {
                        format!("  ({} unfinished)", r.expected - r.finished)
                    } else {
                        String::new()
                    },
                );
            }
        }
    }
    Ok(())
}

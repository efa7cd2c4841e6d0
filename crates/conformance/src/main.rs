//! `shoal-conformance`: runs the OCI Distribution Spec v1.1 conformance suite against a
//! registry and prints a table of every check, then `conformance: <p> passed, <f> failed`.
//! Exits 1 if any check failed.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use shoal_conformance::{CATALOG, Category, SuiteConfig, profiles};

/// Runs the OCI Distribution Spec v1.1 conformance suite against a registry.
#[derive(Debug, Parser)]
#[command(name = "shoal-conformance", version)]
struct Args {
    /// The registry's base URL, e.g. http://127.0.0.1:5000.
    #[arg(required_unless_present = "list")]
    base_url: Option<String>,
    /// Repository namespace for the test content (default: conformance/test-<random>).
    #[arg(long)]
    namespace: Option<String>,
    /// Run only this category (repeatable): pull, push, discovery, management, bad-input.
    #[arg(long = "category", value_name = "CATEGORY")]
    categories: Vec<Category>,
    /// Skip checks matching these patterns (an id, `prefix*`, or `known` for Shoal's known
    /// bugs); comma-separated or repeated.
    #[arg(long, env = "SHOAL_CONFORMANCE_SKIP", value_delimiter = ',')]
    skip: Vec<String>,
    /// Skip what a known registry does not support: `distribution-2.8`.
    #[arg(long)]
    profile: Option<String>,
    /// Push setup content here instead (for a read-only registry under test).
    #[arg(long)]
    push_url: Option<String>,
    /// The registry under test refuses pushes and deletes (check the refusals instead).
    #[arg(long)]
    read_only: bool,
    /// Print every check id and what it verifies, then exit.
    #[arg(long)]
    list: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    // Output errors (a closed pipe) are ignored: the exit code still tells the outcome.
    let mut out = std::io::stdout().lock();
    if args.list {
        for (id, title) in CATALOG {
            if writeln!(out, "{id:<48} {title}").is_err() {
                break;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(base_url) = args.base_url else {
        anyhow::bail!("a registry URL is required");
    };
    let mut config = SuiteConfig::new(base_url);
    if let Some(ns) = args.namespace {
        config.namespace = ns;
    }
    if !args.categories.is_empty() {
        config = config.with_categories(&args.categories);
    }
    match args.profile.as_deref() {
        None => {}
        Some("distribution-2.8") => {
            config = config.with_skips(profiles::rules(profiles::DISTRIBUTION_2_8));
        }
        Some(other) => anyhow::bail!("unknown profile {other:?} (known: distribution-2.8)"),
    }
    config = config.with_skips(profiles::parse_skip_list(&args.skip.join(",")));
    config.push_url = args.push_url;
    config.read_only = args.read_only;

    let report = shoal_conformance::run(&config).await;
    let failed = report.failures().len();
    let _ = write!(out, "{report}");
    let _ = writeln!(
        out,
        "conformance: {} passed, {failed} failed",
        report.passed()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

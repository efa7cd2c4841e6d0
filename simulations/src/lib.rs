//! Shoal's discrete-event swarm simulator: thousands of hosts running the **real** sans-IO
//! engine ([`shoal_engine::Torrent`]: piece selection, pipelining, endgame, timeouts,
//! connection policy), the real origin refusal policy ([`shoal_engine::seeding`]) and the real
//! tracker handout ([`shoal_engine::handout`]), over a modelled network with per-host upload
//! and download caps, latency by rack and zone, late joiners and failing hosts.
//!
//! It is **not** a packet-level network simulator: data moves a piece at a time (see
//! [`sim`] for the model), so a 10k-host run takes minutes, not hours. It depends on no
//! service crate: every policy it shares with the agents lives in the engine.
//!
//! Use: [`Scenario::load`] a TOML file, [`Sim::new`], [`Sim::run`], then read the
//! [`Outcome`] ([`Outcome::summary`], [`Outcome::text`], [`Outcome::write_files`]).

pub mod report;
pub mod scenario;
pub mod sim;
pub mod svg;
mod tracker;
pub mod units;
mod world;

pub use report::{Outcome, Summary, quantile};
pub use scenario::{Scenario, ScenarioError};
pub use sim::Sim;

/// Runs `scenario` to completion.
pub fn run(scenario: &Scenario) -> Result<Outcome, ScenarioError> {
    Ok(Sim::new(scenario)?.run())
}

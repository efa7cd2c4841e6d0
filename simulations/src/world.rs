//! The simulated cluster a scenario describes: hosts with their caps, places, join and failure
//! times, and which origins hold which blob (by the origins' real placement function).

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use shoal_core::PieceLayout;
use shoal_hashring::{Member, Ring};

use crate::scenario::{Scenario, ScenarioError};

/// Nanoseconds of simulated time.
pub(crate) type Nanos = u64;

pub(crate) fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One host as set up.
#[derive(Debug, Clone)]
pub(crate) struct HostSpec {
    pub(crate) origin: bool,
    /// Bytes per second.
    pub(crate) up: f64,
    pub(crate) down: f64,
    pub(crate) zone: u32,
    pub(crate) rack: u32,
    pub(crate) join_at: Nanos,
    pub(crate) fail_at: Option<Nanos>,
}

/// One blob.
#[derive(Debug, Clone)]
pub(crate) struct BlobSpec {
    pub(crate) layout: PieceLayout,
    /// Hosts (origins) that hold it.
    pub(crate) owners: Vec<u32>,
}

/// Hosts 0..origins are the origins, the agents follow.
pub(crate) fn build(
    s: &Scenario,
    rng: &mut StdRng,
) -> Result<(Vec<HostSpec>, Vec<BlobSpec>), ScenarioError> {
    let topo = &s.topology;
    let place = |i: usize| {
        let zone = i % topo.zones;
        let rack = (i / topo.zones) % topo.racks_per_zone;
        (zone as u32, rack as u32)
    };
    let mut hosts = Vec::with_capacity(s.origins.count + s.hosts.count);
    for o in 0..s.origins.count {
        let (zone, rack) = place(o);
        hosts.push(HostSpec {
            origin: true,
            up: s.origins.upload.0,
            down: f64::INFINITY,
            zone,
            rack,
            join_at: 0,
            fail_at: None,
        });
    }
    let n = s.hosts.count;
    // Caps: each class takes its share of a random permutation of the agents.
    let mut caps = vec![(s.hosts.upload.0, s.hosts.download.0); n];
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let mut next = 0;
    for class in &s.hosts.classes {
        let take = ((class.fraction * n as f64).round() as usize).min(n - next);
        for &i in &order[next..next + take] {
            caps[i] = (class.upload.0, class.download.0);
        }
        next += take;
    }
    let pick = |rng: &mut StdRng, fraction: f64| -> Vec<bool> {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        let mut chosen = vec![false; n];
        for &i in &order[..((fraction * n as f64).round() as usize).min(n)] {
            chosen[i] = true;
        }
        chosen
    };
    let late = pick(rng, s.join.late_fraction);
    let failing = pick(rng, s.churn.fraction);
    let spread = nanos(s.join.spread);
    let (fail_from, fail_until) = (nanos(s.churn.from), nanos(s.churn.until));
    for i in 0..n {
        let (zone, rack) = place(s.origins.count + i);
        let offset = if spread == 0 {
            0
        } else {
            rng.random_range(0..=spread)
        };
        let join_at = offset + if late[i] { nanos(s.join.late_at) } else { 0 };
        let fail_at = failing[i].then(|| rng.random_range(fail_from..=fail_until));
        hosts.push(HostSpec {
            origin: false,
            up: caps[i].0,
            down: caps[i].1,
            zone,
            rack,
            join_at,
            fail_at,
        });
    }
    let ring = Ring::new(
        (0..s.origins.count).map(|o| Member::new(format!("origin-{o}"))),
        s.origins.replicas,
    );
    let mut blobs = Vec::new();
    for spec in &s.blobs {
        for _ in 0..spec.count {
            let b = blobs.len();
            let piece = s.piece_length.for_blob(spec.size.0);
            let layout = PieceLayout::new(spec.size.0, piece)
                .map_err(|e| ScenarioError::Invalid(format!("blob {b}: {e}")))?;
            let key = format!("{}/blob-{b}", s.name);
            let owners = ring
                .owners(key.as_bytes())
                .iter()
                .filter_map(|m| m.id.strip_prefix("origin-")?.parse().ok())
                .collect();
            blobs.push(BlobSpec { layout, owners });
        }
    }
    Ok((hosts, blobs))
}

//! Small scenarios (≤ 100 hosts) end to end: every host finishes, a seed fixes the result, and
//! nobody beats the theoretical bound (a sanity check on the network model).

#![allow(clippy::unwrap_used)]

use shoal_sim::{Outcome, Scenario, quantile};

const BASE: &str = r#"
name = "test"
seed = 7
time_limit = "10m"
piece_length = "1MiB"

[hosts]
count = 40
upload = "20MB/s"
download = "20MB/s"

[origins]
count = 3
upload = "20MB/s"
replicas = 2

[[blobs]]
size = "32MiB"
count = 2
"#;

fn run(overrides: &[&str]) -> Outcome {
    let o: Vec<String> = overrides.iter().map(|s| (*s).to_owned()).collect();
    shoal_sim::run(&Scenario::parse(BASE, &o).unwrap()).unwrap()
}

/// Every finished agent took at least its own bound, and the last one at least the
/// swarm-wide bound.
fn assert_bounds_hold(out: &Outcome) {
    let s = out.summary();
    assert!(
        s.ratios.first().is_some_and(|r| *r >= 1.0),
        "an agent beat its bound: {:?}",
        s.ratios.first()
    );
    let last = s.times.last().copied().unwrap();
    assert!(
        last >= s.swarm_bound,
        "the last agent ({last} s) beat the swarm bound ({} s)",
        s.swarm_bound
    );
}

#[test]
fn everyone_finishes_within_bounds() {
    let out = run(&[]);
    let s = out.summary();
    assert_eq!(s.finished, 40);
    assert_eq!(s.expected, 40);
    assert_bounds_hold(&out);
    // Each agent needs 64 MiB; each origin blob is sent at least once.
    assert!(s.origin_egress >= out.blob_bytes, "{}", s.origin_egress);
    assert!(s.duplication >= 1.0);
    // A sane swarm: the median agent is within 2x of its bound here.
    assert!(quantile(&s.ratios, 0.5) < 2.0, "{:?}", s.ratios);
    assert!(
        out.text(std::time::Duration::ZERO)
            .lines()
            .last()
            .unwrap()
            .starts_with("ratio p50=")
    );
}

#[test]
fn a_seed_fixes_the_result() {
    let a = run(&[]).summary();
    let b = run(&[]).summary();
    assert_eq!(a, b);
    let c = run(&["seed=8"]).summary();
    assert_ne!(a.times, c.times, "another seed, another run");
}

#[test]
fn failing_hosts_do_not_stop_the_others() {
    let out = run(&[
        "churn.fraction=0.1",
        "churn.from=1s",
        "churn.until=2s",
        "churn.detect_after=5s",
    ]);
    let s = out.summary();
    assert_eq!(s.failed, 4, "10 % of 40");
    assert_eq!(s.finished, 36);
    assert_eq!(s.expected, 36);
    assert_bounds_hold(&out);
}

#[test]
fn late_joiners_and_slow_hosts_finish() {
    let out = run(&[
        "join.late_fraction=0.25",
        "join.late_at=3s",
        "join.spread=1s",
        "hosts.classes=[{fraction=0.25, upload=\"10MB/s\", download=\"10MB/s\"}]",
    ]);
    let s = out.summary();
    assert_eq!(s.finished, 40);
    assert_bounds_hold(&out);
    let slow = out
        .hosts
        .iter()
        .filter(|h| !h.origin && h.down < 15e6)
        .count();
    assert_eq!(slow, 10);
    let late = out
        .hosts
        .iter()
        .filter(|h| h.join_at >= 3_000_000_000)
        .count();
    assert_eq!(late, 10);
}

#[test]
fn random_piece_policy_and_topology_finish() {
    let out = run(&[
        "engine.piece_policy=random",
        "topology.zones=2",
        "topology.racks_per_zone=3",
    ]);
    assert_eq!(out.summary().finished, 40);
    assert_bounds_hold(&out);
}

#[test]
fn streaming_readers_steer_the_engines_and_everyone_finishes() {
    let plain = run(&[]);
    let streaming = run(&["hosts.streaming=true"]);
    assert_eq!(streaming.summary().finished, 40);
    assert_bounds_hold(&streaming);
    // The readers' position hints change which pieces go first, so the run differs.
    assert_ne!(plain.summary().times, streaming.summary().times);
    // A window as large as the torrent makes every host fetch in order: all want the same
    // pieces, which costs the swarm its diversity.
    let in_order = run(&["hosts.streaming=true", "engine.stream_window=32"]);
    assert_eq!(in_order.summary().finished, 40);
    assert_ne!(in_order.summary().times, streaming.summary().times);
}

#[test]
fn results_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["hosts.count=10"]);
    let files = out.write_files(dir.path()).unwrap();
    assert_eq!(files.len(), 4);
    let hosts = std::fs::read_to_string(dir.path().join("test-hosts.csv")).unwrap();
    assert_eq!(hosts.lines().count(), 1 + 3 + 10, "header, origins, agents");
    let cdf = std::fs::read_to_string(dir.path().join("test-cdf.svg")).unwrap();
    assert!(cdf.contains("<path"));
}

#[test]
fn shipped_scenarios_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        Scenario::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 4, "{n} scenarios");
}

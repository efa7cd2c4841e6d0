//! Which members of a ring own a key: weighted rendezvous hashing (highest random weight) over
//! the **full** key (a blob digest or an info hash — Kraken hashes only 4 hex characters), with
//! a replica count R.
//!
//! Every member gets a score per key, `-weight / ln(u)` where `u ∈ (0, 1)` comes from
//! SHA-256(member id ‖ key); the R highest scores own the key. Consequences:
//! - **Deterministic** across processes, versions and platforms (SHA-256, no seeded hashers).
//! - **Balanced**: each member owns a share of keys proportional to its weight.
//! - **Minimal movement**: adding a member moves only the keys it now wins (≈ 1/N of them);
//!   removing one moves only the keys it owned.
//! - **Health without movement**: callers skip unhealthy members with
//!   [`Ring::ranked`] (the full preference order) instead of rebuilding the ring, so a flapping
//!   member does not reshuffle placement.
//!
//! This crate is **not** membership or health checking (that needs I/O); it is the pure
//! placement function those feed.

use sha2::{Digest as _, Sha256};

/// A ring member: a stable id (e.g. `origin-0.origin:7100` or an address) and a weight.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Member {
    /// Stable identity; the score depends on it, so renaming a member moves its keys.
    pub id: String,
    /// Relative capacity (1 = normal). Zero-weight members never own keys.
    pub weight: u32,
}

impl Member {
    /// A member of weight 1.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            weight: 1,
        }
    }
}

/// A set of members and a replica count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    members: Vec<Member>,
    replicas: usize,
}

/// Default replica count.
pub const DEFAULT_REPLICAS: usize = 3;

impl Ring {
    /// A ring of `members` (duplicates by id are dropped; order does not matter) keeping
    /// `replicas` copies of each key (at least 1).
    pub fn new(members: impl IntoIterator<Item = Member>, replicas: usize) -> Self {
        let mut members: Vec<Member> = members.into_iter().collect();
        members.sort();
        members.dedup_by(|a, b| a.id == b.id);
        Self {
            members,
            replicas: replicas.max(1),
        }
    }

    /// The members, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The replica count R.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Whether the ring has a member with this id.
    pub fn contains(&self, id: &str) -> bool {
        self.members.iter().any(|m| m.id == id)
    }

    /// Every member with a positive weight, best first for `key`: the preference order used
    /// for placement and for failover (try the next one when one is down).
    pub fn ranked(&self, key: &[u8]) -> Vec<&Member> {
        let mut scored: Vec<(f64, &Member)> = self
            .members
            .iter()
            .filter(|m| m.weight > 0)
            .map(|m| (score(m, key), m))
            .collect();
        // Highest score first; ties (astronomically unlikely) broken by id for determinism.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        scored.into_iter().map(|(_, m)| m).collect()
    }

    /// The R owners of `key`, best first (fewer if the ring is smaller).
    pub fn owners(&self, key: &[u8]) -> Vec<&Member> {
        let mut ranked = self.ranked(key);
        ranked.truncate(self.replicas);
        ranked
    }

    /// The R owners of `key` among members for which `healthy` holds, best first: unhealthy
    /// owners are skipped and the next-ranked healthy members stand in for them.
    pub fn healthy_owners(&self, key: &[u8], healthy: impl Fn(&Member) -> bool) -> Vec<&Member> {
        self.ranked(key)
            .into_iter()
            .filter(|m| healthy(m))
            .take(self.replicas)
            .collect()
    }

    /// Whether `id` is one of the R owners of `key`.
    pub fn owns(&self, id: &str, key: &[u8]) -> bool {
        self.owners(key).iter().any(|m| m.id == id)
    }
}

/// Weighted rendezvous score: `-w / ln(u)`, u uniform in (0, 1) from SHA-256(id ‖ 0 ‖ key).
fn score(member: &Member, key: &[u8]) -> f64 {
    let mut h = Sha256::new();
    h.update(member.id.as_bytes());
    h.update([0u8]);
    h.update(key);
    let out = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&out[..8]);
    // 53 random bits → (0, 1): never 0 (ln 0) and never 1 (ln 1 = 0).
    let bits = u64::from_be_bytes(first) >> 11;
    let u = (bits as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(member.weight) / u.ln()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn key(i: u32) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(i.to_be_bytes());
        h.finalize().into()
    }

    fn ring(n: usize, r: usize) -> Ring {
        Ring::new((0..n).map(|i| Member::new(format!("origin-{i}"))), r)
    }

    #[test]
    fn owners_are_distinct_and_deterministic() {
        let a = ring(5, 3);
        let b = Ring::new(a.members().iter().rev().cloned(), 3);
        for i in 0..100 {
            let k = key(i);
            let owners: Vec<_> = a.owners(&k).iter().map(|m| m.id.clone()).collect();
            assert_eq!(owners.len(), 3);
            let mut dedup = owners.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), 3);
            let again: Vec<_> = b.owners(&k).iter().map(|m| m.id.clone()).collect();
            assert_eq!(owners, again, "member order must not matter");
        }
        // Fixed vectors (computed independently) pin the placement function across versions:
        // changing it would move every key of every deployed ring.
        let five = ring(5, 5);
        let ids = |i| {
            five.ranked(&key(i))
                .iter()
                .map(|m| m.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(0),
            ["origin-1", "origin-0", "origin-3", "origin-2", "origin-4"]
        );
        assert_eq!(
            ids(1),
            ["origin-1", "origin-3", "origin-4", "origin-2", "origin-0"]
        );
        assert_eq!(
            ids(2),
            ["origin-2", "origin-3", "origin-1", "origin-0", "origin-4"]
        );
    }

    #[test]
    fn small_rings_and_edge_cases() {
        assert!(Ring::new([], 3).owners(&key(1)).is_empty());
        assert_eq!(ring(2, 3).owners(&key(1)).len(), 2);
        let r = Ring::new([Member::new("a"), Member::new("a"), Member::new("b")], 0);
        assert_eq!(r.members().len(), 2);
        assert_eq!(r.replicas(), 1);
        let zero = Ring::new(
            [
                Member::new("a"),
                Member {
                    id: "z".into(),
                    weight: 0,
                },
            ],
            2,
        );
        assert_eq!(zero.owners(&key(1)).len(), 1, "zero weight never owns");
    }

    #[test]
    fn balance_within_a_few_percent_over_10k_keys() {
        let r = ring(10, 1);
        let mut counts = std::collections::HashMap::new();
        for i in 0..10_000 {
            *counts
                .entry(r.owners(&key(i))[0].id.clone())
                .or_insert(0u32) += 1;
        }
        for (id, c) in &counts {
            // Expect 1000 each; binomial σ ≈ 30, so ±10% is > 3σ.
            assert!((900..=1100).contains(c), "{id} owns {c} of 10000");
        }
        // Replicas: each member holds ≈ R/N of keys.
        let r3 = ring(10, 3);
        let mut counts = std::collections::HashMap::new();
        for i in 0..10_000 {
            for m in r3.owners(&key(i)) {
                *counts.entry(m.id.clone()).or_insert(0u32) += 1;
            }
        }
        for (id, c) in &counts {
            assert!((2760..=3240).contains(c), "{id} holds {c} replicas");
        }
    }

    #[test]
    fn weights_are_proportional() {
        let r = Ring::new(
            [
                Member::new("a"),
                Member {
                    id: "b".into(),
                    weight: 3,
                },
            ],
            1,
        );
        let b = (0..10_000)
            .filter(|i| r.owners(&key(*i))[0].id == "b")
            .count();
        assert!((7200..=7800).contains(&b), "weight 3 of 4 owns {b}");
    }

    #[test]
    fn join_and_leave_move_about_one_nth() {
        let before = ring(3, 1);
        let after = ring(4, 1);
        let moved = (0..10_000)
            .filter(|i| before.owners(&key(*i))[0].id != after.owners(&key(*i))[0].id)
            .count();
        // Expect 1/4 of keys to move, all of them to the newcomer.
        assert!((2300..=2700).contains(&moved), "moved {moved}");
        for i in 0..10_000 {
            let (b, a) = (before.owners(&key(i))[0], after.owners(&key(i))[0]);
            assert!(
                a.id == b.id || a.id == "origin-3",
                "a key moved between old members"
            );
        }
        // With R = 3 the newcomer enters the top 3 of ≈ 3/4 of keys, displacing one old owner
        // each time and never more.
        let (b3, a3) = (ring(3, 3), ring(4, 3));
        for i in 0..1000 {
            let old: Vec<_> = b3.owners(&key(i)).iter().map(|m| m.id.clone()).collect();
            let new: Vec<_> = a3.owners(&key(i)).iter().map(|m| m.id.clone()).collect();
            let kept = new.iter().filter(|id| old.contains(id)).count();
            assert!(kept >= 2, "a join displaces at most one owner");
        }
    }

    #[test]
    fn unhealthy_owners_are_skipped_in_rank_order() {
        let r = ring(5, 3);
        for i in 0..200 {
            let k = key(i);
            let ranked = r.ranked(&k);
            let down = ranked[0].id.clone();
            let healthy = r.healthy_owners(&k, |m| m.id != down);
            let want: Vec<_> = ranked[1..4].iter().map(|m| &m.id).collect();
            let got: Vec<_> = healthy.iter().map(|m| &m.id).collect();
            assert_eq!(got, want);
        }
    }

    proptest! {
        #[test]
        fn owners_are_a_prefix_of_ranked(n in 1usize..12, r in 1usize..5, k in any::<[u8; 32]>()) {
            let ring = ring(n, r);
            let ranked = ring.ranked(&k);
            let owners = ring.owners(&k);
            prop_assert_eq!(owners.len(), r.min(n));
            prop_assert_eq!(&ranked[..owners.len()], &owners[..]);
            for m in &owners {
                prop_assert!(ring.owns(&m.id, &k));
            }
        }

        #[test]
        fn removing_a_member_only_moves_its_keys(n in 2usize..10, k in any::<[u8; 32]>()) {
            let full = ring(n, 1);
            let gone = full.members()[0].id.clone();
            let less = Ring::new(full.members().iter().filter(|m| m.id != gone).cloned(), 1);
            let before = full.owners(&k)[0].id.clone();
            let after = less.owners(&k)[0].id.clone();
            if before != gone {
                prop_assert_eq!(before, after);
            }
        }
    }
}

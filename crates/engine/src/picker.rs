//! Piece selection: which pieces to request from a neighbour.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::config::PiecePolicy;

/// Keeps the `k` best candidates seen, by (availability, random tie-break) ascending, without
/// allocating per piece. `k` is a pipeline depth, so a few entries.
#[derive(Debug)]
pub(crate) struct Best {
    k: usize,
    /// Sorted ascending by key.
    picks: Vec<((u32, u32), u32)>,
}

impl Best {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            picks: Vec::with_capacity(k + 1),
        }
    }

    /// Offers piece `p` with `availability` (ignored for the random policy).
    pub(crate) fn offer(
        &mut self,
        policy: PiecePolicy,
        p: u32,
        availability: u32,
        rng: &mut StdRng,
    ) {
        if self.k == 0 {
            return;
        }
        let primary = match policy {
            PiecePolicy::RarestFirst => availability,
            PiecePolicy::Random => 0,
        };
        // A candidate that is strictly worse than every pick so far needs no tie-break draw.
        if self.picks.len() == self.k && primary > self.picks[self.k - 1].0.0 {
            return;
        }
        let key = (primary, rng.random::<u32>());
        if self.picks.len() == self.k && key >= self.picks[self.k - 1].0 {
            return;
        }
        let at = self.picks.partition_point(|(k, _)| *k < key);
        self.picks.insert(at, (key, p));
        self.picks.truncate(self.k);
    }

    /// The chosen pieces, best first.
    pub(crate) fn into_pieces(self) -> impl Iterator<Item = u32> {
        self.picks.into_iter().map(|(_, p)| p)
    }
}

const NONE: u32 = u32::MAX;

/// How many connected peers have each piece, and the pieces we lack ordered by that count, so
/// the rarest pieces a peer has are found by walking from the front instead of scanning every
/// piece (libtorrent's piece picker works the same way). `order` holds the missing pieces
/// sorted by availability in buckets; bucket `a` (pieces exactly `a` peers have) is
/// `order[ends[a - 1]..ends[a]]`. A count change moves a piece to the edge of the next bucket
/// with one swap; acquiring a piece moves it out through the buckets above it. Within a bucket
/// the order is a shuffle, and walks start at a random offset, so ties break at random.
#[derive(Debug)]
pub(crate) struct Rarity {
    avail: Vec<u32>,
    order: Vec<u32>,
    /// Piece → its index in `order`, or `NONE` when we have it.
    pos: Vec<u32>,
    /// One past the last index of each bucket; the last entry is `order.len()`.
    ends: Vec<u32>,
}

impl Rarity {
    /// All counts zero; `missing` are the pieces we lack, of `pieces`.
    pub(crate) fn new(pieces: u32, missing: impl Iterator<Item = u32>, rng: &mut StdRng) -> Self {
        let mut order: Vec<u32> = missing.collect();
        order.shuffle(rng);
        let mut pos = vec![NONE; pieces as usize];
        for (i, p) in order.iter().enumerate() {
            pos[*p as usize] = i as u32;
        }
        let ends = vec![order.len() as u32];
        Self {
            avail: vec![0; pieces as usize],
            order,
            pos,
            ends,
        }
    }

    /// How many connected peers have piece `p`.
    pub(crate) fn get(&self, p: u32) -> u32 {
        self.avail[p as usize]
    }

    /// Pieces we lack.
    pub(crate) fn missing(&self) -> usize {
        self.order.len()
    }

    fn swap(&mut self, i: u32, j: u32) {
        self.order.swap(i as usize, j as usize);
        self.pos[self.order[i as usize] as usize] = i;
        self.pos[self.order[j as usize] as usize] = j;
    }

    /// One more peer has `p`.
    pub(crate) fn inc(&mut self, p: u32) {
        let a = self.avail[p as usize] as usize;
        self.avail[p as usize] += 1;
        let i = self.pos[p as usize];
        if i == NONE {
            return;
        }
        while self.ends.len() <= a + 1 {
            self.ends.push(self.order.len() as u32);
        }
        // The last slot of bucket `a` becomes the first of bucket `a + 1`.
        let last = self.ends[a] - 1;
        self.swap(i, last);
        self.ends[a] -= 1;
    }

    /// One peer fewer has `p`.
    pub(crate) fn dec(&mut self, p: u32) {
        let a = self.avail[p as usize] as usize;
        if a == 0 {
            return;
        }
        self.avail[p as usize] -= 1;
        let i = self.pos[p as usize];
        if i == NONE {
            return;
        }
        // The first slot of bucket `a` becomes the last of bucket `a - 1`.
        let first = self.ends[a - 1];
        self.swap(i, first);
        self.ends[a - 1] += 1;
    }

    /// We have `p` now: it leaves the order.
    pub(crate) fn remove(&mut self, p: u32) {
        let mut i = self.pos[p as usize];
        if i == NONE {
            return;
        }
        let top = self.ends.len() - 1;
        let mut a = self.avail[p as usize] as usize;
        while a < top {
            let last = self.ends[a] - 1;
            self.swap(i, last);
            self.ends[a] -= 1;
            i = last;
            a += 1;
        }
        let last = self.order.len() as u32 - 1;
        self.swap(i, last);
        self.order.pop();
        self.ends[top] -= 1;
        self.pos[p as usize] = NONE;
    }

    /// Offers missing pieces to `visit`, rarest first from availability `from` up, each
    /// bucket from a random offset, until `visit` returns false.
    pub(crate) fn walk(&self, from: usize, rng: &mut StdRng, mut visit: impl FnMut(u32) -> bool) {
        let mut start = if from == 0 {
            0
        } else {
            self.ends
                .get(from - 1)
                .copied()
                .unwrap_or(self.order.len() as u32)
        };
        for &end in self.ends.iter().skip(from) {
            if !visit_range(&self.order[start as usize..end as usize], rng, &mut visit) {
                return;
            }
            start = end;
        }
    }

    /// Offers every missing piece to `visit` in one random rotation, until it returns false.
    pub(crate) fn walk_all(&self, rng: &mut StdRng, mut visit: impl FnMut(u32) -> bool) {
        visit_range(&self.order, rng, &mut visit);
    }

    #[cfg(test)]
    fn check(&self) {
        let mut prev = 0;
        for (a, &end) in self.ends.iter().enumerate() {
            for &p in &self.order[prev as usize..end as usize] {
                assert_eq!(
                    self.avail[p as usize] as usize, a,
                    "piece {p} in bucket {a}"
                );
            }
            prev = end;
        }
        assert_eq!(prev as usize, self.order.len());
        for (i, &p) in self.order.iter().enumerate() {
            assert_eq!(self.pos[p as usize] as usize, i);
        }
    }
}

/// Visits `range` cyclically from a random offset; false when `visit` said stop.
fn visit_range(range: &[u32], rng: &mut StdRng, visit: &mut impl FnMut(u32) -> bool) -> bool {
    if range.is_empty() {
        return true;
    }
    let off = rng.random_range(0..range.len());
    range[off..].iter().chain(&range[..off]).all(|&p| visit(p))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn keeps_the_rarest_k() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut best = Best::new(2);
        for (p, avail) in [(0, 5), (1, 1), (2, 3), (3, 1), (4, 9)] {
            best.offer(PiecePolicy::RarestFirst, p, avail, &mut rng);
        }
        let mut got: Vec<u32> = best.into_pieces().collect();
        got.sort_unstable();
        assert_eq!(got, vec![1, 3]);
    }

    #[test]
    fn rarity_keeps_buckets_through_changes() {
        use rand::SeedableRng;
        let mut rng = StdRng::seed_from_u64(3);
        let mut r = Rarity::new(50, (0..50).filter(|p| p % 7 != 0), &mut rng);
        r.check();
        let mut model = [0u32; 50];
        let mut missing: Vec<bool> = (0..50).map(|p| p % 7 != 0).collect();
        for step in 0..5000 {
            let p = rng.random_range(0..50u32);
            match step % 5 {
                0..=2 => {
                    r.inc(p);
                    model[p as usize] += 1;
                }
                3 => {
                    r.dec(p);
                    model[p as usize] = model[p as usize].saturating_sub(1);
                }
                _ if step % 97 == 4 => {
                    r.remove(p);
                    missing[p as usize] = false;
                }
                _ => {}
            }
            r.check();
        }
        for p in 0..50 {
            assert_eq!(r.get(p), model[p as usize]);
        }
        assert_eq!(r.missing(), missing.iter().filter(|m| **m).count());
        // A walk visits the missing pieces in non-decreasing availability.
        let mut seen = Vec::new();
        r.walk(0, &mut rng, |p| {
            seen.push(p);
            true
        });
        assert_eq!(seen.len(), r.missing());
        assert!(
            seen.windows(2)
                .all(|w| model[w[0] as usize] <= model[w[1] as usize])
        );
        assert!(seen.iter().all(|p| missing[*p as usize]));
        // Stopping early stops.
        let mut n = 0;
        r.walk_all(&mut rng, |_| {
            n += 1;
            n < 3
        });
        assert_eq!(n, 3);
    }

    #[test]
    fn ties_are_broken_at_random() {
        let mut counts = [0u32; 4];
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..4000 {
            let mut best = Best::new(1);
            for p in 0..4 {
                best.offer(PiecePolicy::RarestFirst, p, 2, &mut rng);
            }
            counts[best.into_pieces().next().unwrap() as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}

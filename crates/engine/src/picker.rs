//! Piece selection: which pieces to request from a neighbour.

use rand::Rng;
use rand::rngs::StdRng;

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

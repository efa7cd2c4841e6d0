//! The simulated tracker: per blob, the peers that announced, kept sorted into the handout's
//! priority classes so each answer is [`shoal_engine::handout::handout_by_class`] (the real
//! tracker's policy) at O(answer) cost instead of O(swarm).

use rand::rngs::StdRng;
use shoal_engine::handout::handout_by_class;

const SEEDERS: usize = 0;
const ORIGINS: usize = 1;
const IN_PROGRESS: usize = 2;

/// One blob's peers.
#[derive(Debug, Default)]
pub(crate) struct Swarm {
    /// Hosts by class: seeders, origins, in-progress peers.
    classes: [Vec<u32>; 3],
    /// Host → (class, position in it, last announce in ns), indexed by host (deterministic,
    /// unlike a hash map's iteration order).
    entries: Vec<Option<(usize, usize, u64)>>,
    known: usize,
}

impl Swarm {
    /// Records an announce of `host` at `now`.
    pub(crate) fn announce(&mut self, host: u32, is_origin: bool, complete: bool, now: u64) {
        let class = if is_origin {
            ORIGINS
        } else if complete {
            SEEDERS
        } else {
            IN_PROGRESS
        };
        let i = host as usize;
        if self.entries.len() <= i {
            self.entries.resize(i + 1, None);
        }
        match self.entries[i] {
            Some((c, _, ref mut at)) if c == class => *at = now,
            Some(_) => {
                self.remove(host);
                self.insert(host, class, now);
            }
            None => self.insert(host, class, now),
        }
    }

    fn insert(&mut self, host: u32, class: usize, now: u64) {
        self.classes[class].push(host);
        self.entries[host as usize] = Some((class, self.classes[class].len() - 1, now));
        self.known += 1;
    }

    fn remove(&mut self, host: u32) {
        let Some((class, pos, _)) = self.entries.get_mut(host as usize).and_then(Option::take)
        else {
            return;
        };
        self.known -= 1;
        let members = &mut self.classes[class];
        members.swap_remove(pos);
        if let Some(&moved) = members.get(pos)
            && let Some(Some(e)) = self.entries.get_mut(moved as usize)
        {
            e.1 = pos;
        }
    }

    /// Forgets peers that have not announced since `cutoff` (the tracker's peer TTL).
    pub(crate) fn expire(&mut self, cutoff: u64) {
        let stale: Vec<u32> = (0..self.entries.len())
            .filter(|h| {
                self.entries[*h].is_some_and(|(class, _, at)| class != ORIGINS && at < cutoff)
            })
            .map(|h| h as u32)
            .collect();
        for h in stale {
            self.remove(h);
        }
    }

    /// The answer to `host`'s announce: at most `limit` other peers.
    pub(crate) fn handout(&self, host: u32, limit: usize, rng: &mut StdRng) -> Vec<u32> {
        let [a, b, c] = &self.classes;
        handout_by_class([a, b, c], limit, |h| *h == host, rng)
            .into_iter()
            .copied()
            .collect()
    }

    /// Number of peers known.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.known
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn classes_follow_announces_and_expire() {
        let mut s = Swarm::default();
        let mut rng = StdRng::seed_from_u64(1);
        s.announce(0, true, true, 0);
        for h in 1..=5 {
            s.announce(h, false, false, 0);
        }
        s.announce(3, false, true, 10);
        let got = s.handout(1, 2, &mut rng);
        assert_eq!(got, vec![3, 0], "seeder, then origin");
        let got = s.handout(1, 100, &mut rng);
        assert_eq!(got.len(), 5, "everyone but the requester: {got:?}");
        assert!(!got.contains(&1));
        s.expire(5);
        assert_eq!(s.len(), 2, "the origin stays, the stale peers go");
        assert_eq!(s.handout(7, 10, &mut rng), vec![3, 0]);
    }
}

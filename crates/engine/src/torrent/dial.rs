//! Whom to dial: tracker candidates, up to the connection limit and the outbound share.

use std::collections::VecDeque;
use std::time::Instant;

use super::Torrent;
use crate::interface::{Action, Role};

impl Torrent {
    /// Dials candidates while there is room: under `max_connections` in all, and under
    /// `max_outbound` of our own dials or, from the second tracker answer on, under
    /// `max_connections - inbound_reserve` connections. Blacklisted candidates wait for their
    /// ban to end.
    pub(super) fn dial(&mut self, now: Instant) {
        if self.role == Role::Origin || self.is_complete() {
            self.candidates.clear();
            return;
        }
        let mut outbound = self.dialing.len() + self.peers.values().filter(|p| p.outbound).count();
        let max_outbound = self.config.max_outbound.max(1);
        // Past the first answer, dial until only the inbound reserve is free.
        let top_up_to = if self.answers >= 2 {
            self.config
                .max_connections
                .saturating_sub(self.config.inbound_reserve)
        } else {
            0
        };
        let room = |t: &Self, outbound: usize| {
            let connections = t.peers.len() + t.dialing.len();
            connections < t.config.max_connections
                && (outbound < max_outbound || connections < top_up_to)
        };
        if self.candidates.is_empty() || !room(self, outbound) {
            return;
        }
        let mut skipped = VecDeque::new();
        while room(self, outbound) {
            let Some(c) = self.candidates.pop_front() else {
                break;
            };
            if self.peers.contains_key(&c.peer_id) || self.dialing.contains(&c.peer_id) {
                continue;
            }
            if self.is_blacklisted(&c.peer_id, now) {
                skipped.push_back(c);
                continue;
            }
            self.dialing.insert(c.peer_id);
            outbound += 1;
            self.actions.push_back(Action::Connect {
                peer: c.peer_id,
                addr: c.addr,
            });
        }
        skipped.append(&mut self.candidates);
        self.candidates = skipped;
    }
}

//! Carrying out the engines' actions: messages, HAVE batches, completion, timers.

use shoal_engine::Action;

use super::{Ev, Sim, host_of};
use crate::world::nanos;

impl Sim {
    /// Sends one HAVE batch per distinct latency for `piece` to `recipients`.
    pub(super) fn send_haves(&mut self, from: u32, b: u32, piece: u32, recipients: &mut Vec<u32>) {
        while !recipients.is_empty() {
            let lat = self.lat(from, recipients[0]);
            let batch = self.free_batches.pop().unwrap_or_else(|| {
                self.batches.push(Vec::new());
                (self.batches.len() - 1) as u32
            });
            let mut rest = Vec::new();
            for to in recipients.drain(..) {
                if self.lat(from, to) == lat {
                    self.batches[batch as usize].push(to);
                } else {
                    rest.push(to);
                }
            }
            *recipients = rest;
            let ev = Ev::Haves {
                batch,
                from,
                blob: b,
                piece,
            };
            self.schedule(self.now + lat, ev);
        }
    }

    /// Carries out the engine's actions for host `h`, blob `b`, then re-arms its timer.
    pub(super) fn drain(&mut self, h: u32, b: u32) {
        // Consecutive HAVEs of one piece (the engine tells all neighbours at once) go out as
        // batches.
        let mut haves: Vec<u32> = Vec::new();
        let mut have_piece = 0;
        loop {
            let Some(slot) = self.slot(h, b) else {
                return;
            };
            let Some(action) = slot.torrent.poll_action() else {
                break;
            };
            if let Action::Have { peer, piece } = action {
                if !haves.is_empty() && piece.get() != have_piece {
                    self.send_haves(h, b, have_piece, &mut haves);
                }
                have_piece = piece.get();
                haves.push(host_of(&peer));
                continue;
            }
            if !haves.is_empty() {
                self.send_haves(h, b, have_piece, &mut haves);
            }
            match action {
                Action::Connect { peer, .. } => {
                    let to = host_of(&peer);
                    self.send(
                        h,
                        to,
                        Ev::Dial {
                            to,
                            from: h,
                            blob: b,
                        },
                    );
                }
                Action::Disconnect { peer, .. } => {
                    let to = host_of(&peer);
                    self.hosts[h as usize]
                        .uplink
                        .retain(|u| !(u.to == to && u.blob == b));
                    self.send(
                        h,
                        to,
                        Ev::Closed {
                            to,
                            from: h,
                            blob: b,
                        },
                    );
                }
                Action::Request { peer, piece } => {
                    let to = host_of(&peer);
                    let piece = piece.get();
                    self.send(
                        h,
                        to,
                        Ev::Request {
                            to,
                            from: h,
                            blob: b,
                            piece,
                        },
                    );
                }
                Action::Cancel { peer, piece } => {
                    let to = host_of(&peer);
                    let piece = piece.get();
                    self.send(
                        h,
                        to,
                        Ev::Cancel {
                            to,
                            from: h,
                            blob: b,
                            piece,
                        },
                    );
                }
                Action::Have { .. } => {}
                Action::Complete { peer } => {
                    let to = host_of(&peer);
                    self.send(
                        h,
                        to,
                        Ev::Complete {
                            to,
                            from: h,
                            blob: b,
                        },
                    );
                }
                Action::Finished => self.finished(h, b),
            }
        }
        if !haves.is_empty() {
            self.send_haves(h, b, have_piece, &mut haves);
        }
        self.arm(h, b);
    }

    pub(super) fn finished(&mut self, h: u32, b: u32) {
        // The engine reports `Finished` once per torrent.
        let now = self.now;
        // Real agents announce completion right away, so they are handed out as seeders.
        self.swarms[b as usize].announce(h, false, true, now);
        let host = &mut self.hosts[h as usize];
        host.blobs_left = host.blobs_left.saturating_sub(1);
        if host.blobs_left == 0 && host.done_at.is_none() {
            host.done_at = Some(now);
            self.pending -= 1;
            self.progress.completion(now);
        }
    }

    pub(super) fn arm(&mut self, h: u32, b: u32) {
        let now = self.now;
        let t0 = self.t0;
        let guard = self.arm_guard;
        let Some(slot) = self.slot(h, b) else {
            return;
        };
        // A timer due within the guard is already armed: every deadline an input can create
        // lies at least that far ahead (see `arm_guard`), so asking the engine again (the
        // costliest call at 10k hosts) could only find the same or a later one.
        if slot.timer_at.is_some_and(|t| t <= now + guard) {
            return;
        }
        let Some(deadline) = slot.torrent.poll_timeout() else {
            return;
        };
        // Never in the past, and never a busy loop on a deadline the engine keeps.
        let at = nanos(deadline.saturating_duration_since(t0)).max(now + 1_000);
        if slot.timer_at.is_none_or(|t| at < t) {
            slot.timer_at = Some(at);
            self.schedule(at, Ev::Timer { host: h, blob: b });
        }
    }
}

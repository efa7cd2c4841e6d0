//! The figures a finished run hands back.

use shoal_engine::TorrentStats;

use super::Sim;
use crate::report::{HostResult, Outcome};

impl Sim {
    pub(super) fn outcome(self) -> Outcome {
        let mut engine = TorrentStats::default();
        for slot in self.hosts.iter().flat_map(|h| h.slots.iter().flatten()) {
            let st = slot.torrent.stats();
            engine.pieces_received += st.pieces_received;
            engine.duplicate_pieces += st.duplicate_pieces;
            engine.corrupt_pieces += st.corrupt_pieces;
            engine.timeouts += st.timeouts;
        }
        let total: u64 = self.blobs.iter().map(|b| b.layout.blob_len()).sum();
        let hosts = self
            .hosts
            .iter()
            .map(|h| HostResult {
                origin: h.spec.origin,
                up: h.spec.up,
                down: h.spec.down,
                join_at: h.spec.join_at,
                done_at: h.done_at,
                failed: h
                    .spec
                    .fail_at
                    .is_some_and(|t| h.done_at.is_none_or(|d| t < d)),
                uploaded: h.uploaded,
                received: h.received,
                duplicates: h.duplicates,
            })
            .collect();
        Outcome {
            scenario: self.scenario,
            blob_bytes: total,
            owner_upload: self
                .blobs
                .iter()
                .map(|b| {
                    b.owners
                        .iter()
                        .map(|o| self.hosts[*o as usize].spec.up)
                        .sum::<f64>()
                })
                .collect(),
            blob_sizes: self.blobs.iter().map(|b| b.layout.blob_len()).collect(),
            piece_lengths: self.blobs.iter().map(|b| b.layout.piece_len()).collect(),
            hosts,
            end: self.now,
            events: self.events,
            progress: self.progress,
            engine,
            refusals: self.refusals,
        }
    }
}

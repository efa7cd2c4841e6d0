//! Seeding: the origin answers peers that ask for a torrent it handed out metainfo for.

use std::sync::Arc;

use shoal_core::{InfoHash, MetaInfo};
use shoal_p2p::{Resolver, Source};

use crate::blobs::Blobs;

/// Resolves torrents to cached blobs.
pub(crate) struct OriginResolver(pub(crate) Arc<Blobs>);

impl Resolver for OriginResolver {
    fn resolve(&self, info_hash: &InfoHash) -> Option<(MetaInfo, Source)> {
        let (meta, reader) = self.0.seed(info_hash)?;
        Some((meta, Source::Complete(Arc::new(reader))))
    }
}

use futures_util::StreamExt;
use shoal_core::Algorithm;

use super::*;
use crate::temp::CHECKPOINT_STRIDE;

fn put(store: &BlobStore, data: &[u8]) -> Digest {
    let d = Digest::compute(Algorithm::Sha256, data);
    let mut t = store.create_temp().unwrap();
    t.write(data).unwrap();
    store.commit(t, &d).unwrap();
    d
}

fn small(capacity: u64) -> StoreConfig {
    StoreConfig {
        capacity_bytes: capacity,
        high_watermark: 0.9,
        low_watermark: 0.5,
    }
}

fn tmp_files(dir: &Path) -> usize {
    fs::read_dir(dir.join("tmp")).unwrap().count()
}

#[test]
fn commit_verifies_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    let d = put(&store, b"hello");
    assert_eq!(store.stat(&d), Some(5));
    let r = store.open_blob(&d).unwrap();
    let mut buf = [0u8; 5];
    assert_eq!(r.read_at(0, &mut buf).unwrap(), 5);
    assert_eq!(&buf, b"hello");
    drop(store);
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.stat(&d), Some(5));
    assert_eq!(store.stats().bytes, 5);
}

#[test]
fn digest_mismatch_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    let wrong = Digest::compute(Algorithm::Sha256, b"other");
    let mut t = store.create_temp().unwrap();
    t.write(b"hello").unwrap();
    let err = store.commit(t, &wrong).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch(_)), "{err}");
    assert_eq!(store.stat(&wrong), None);
    assert_eq!(tmp_files(dir.path()), 0);
    assert_eq!(store.stats().blobs, 0);
}

#[test]
fn sha512_content_verifies_with_sha512() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    let d = Digest::compute(Algorithm::Sha512, b"five!");
    let mut t = store.create_temp().unwrap();
    t.write(b"five!").unwrap();
    store.commit(t, &d).unwrap();
    assert_eq!(store.stat(&d), Some(5));
    let wrong = Digest::compute(Algorithm::Sha512, b"six!!!");
    let mut t = store.create_temp().unwrap();
    t.write(b"five!").unwrap();
    assert!(store.commit(t, &wrong).is_err());
}

#[test]
fn dropped_temp_and_crash_leftovers_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    let mut t = store.create_temp().unwrap();
    t.write(b"partial").unwrap();
    assert_eq!(tmp_files(dir.path()), 1);
    drop(t);
    assert_eq!(tmp_files(dir.path()), 0);
    // A crash mid-write leaves a file in tmp/: it never becomes a blob and is cleared on open.
    let t = store.create_temp().unwrap();
    std::mem::forget(t);
    drop(store);
    assert_eq!(tmp_files(dir.path()), 1);
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(tmp_files(dir.path()), 0);
    assert_eq!(store.stats().blobs, 0);
}

#[test]
fn eviction_respects_watermarks_lru_and_pins() {
    let dir = tempfile::tempdir().unwrap();
    // Capacity 100: evict above 90, down to 50.
    let store = BlobStore::open(dir.path(), small(100)).unwrap();
    let a = put(&store, &[1u8; 30]);
    let b = put(&store, &[2u8; 30]);
    let c = put(&store, &[3u8; 30]);
    assert_eq!(
        store.stats().bytes,
        90,
        "at the high watermark, nothing evicted"
    );
    store.pin(&a);
    store.open_blob(&c).unwrap(); // c is now most recent
    let d = put(&store, &[4u8; 30]); // 120 > 90: evict LRU unpinned until <= 50
    let s = store.stats();
    // a is oldest but pinned; b is next; then c. After evicting b and c: a + d = 60 > 50,
    // nothing else evictable except d, which is newest. LRU order: b, c, d.
    assert_eq!(store.stat(&a), Some(30), "pinned blob kept");
    assert_eq!(store.stat(&b), None);
    assert_eq!(store.stat(&c), None);
    assert_eq!(store.stat(&d), None);
    assert_eq!(s.bytes, 30);
    assert_eq!(s.evictions, 3);
    assert!(store.open_blob(&b).is_err());
    // Files are gone too.
    drop(store);
    let store = BlobStore::open(dir.path(), small(100)).unwrap();
    assert_eq!(store.stats().blobs, 1);
}

#[test]
fn unpin_allows_eviction_and_pins_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), small(100)).unwrap();
    let a = put(&store, &[1u8; 60]);
    store.pin(&a);
    store.pin(&a);
    let b = put(&store, &[2u8; 20]);
    let c = put(&store, &[3u8; 20]); // 100 > 90: b then c evicted (a pinned); 60 left
    assert_eq!((store.stat(&b), store.stat(&c)), (None, None));
    assert_eq!(store.stats().bytes, 60);
    assert_eq!(store.stats().pinned_bytes, 60);
    store.unpin(&a);
    assert_eq!(store.stats().pinned_bytes, 60, "still pinned once");
    // Usage (60) is still above the low watermark (50) after the last eviction, so releasing
    // the pin lets eviction carry on: a goes.
    store.unpin(&a);
    assert_eq!(store.stat(&a), None);
    assert_eq!(store.stats().bytes, 0);
    // Back under the low watermark: no eviction until usage passes the high watermark again.
    let d = put(&store, &[4u8; 60]);
    let e = put(&store, &[5u8; 30]); // 90, not above 90
    assert_eq!((store.stat(&d), store.stat(&e)), (Some(60), Some(30)));
    let f = put(&store, &[6u8; 20]); // 110 > 90: d (least recent) evicted → 50 <= 50
    assert_eq!(store.stat(&d), None);
    assert_eq!((store.stat(&e), store.stat(&f)), (Some(30), Some(20)));
    assert_eq!(store.stats().bytes, 50);
}

#[test]
fn metainfo_sidecar_round_trips_and_is_deleted_with_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    let data = vec![7u8; 100];
    let d = put(&store, &data);
    let mut b = shoal_core::MetaInfoBuilder::new(Algorithm::Sha256, 16).unwrap();
    b.update(&data);
    let m = b.finish(d).unwrap();
    assert!(store.read_metainfo(&d).is_none());
    store.write_metainfo(&m).unwrap();
    assert_eq!(store.read_metainfo(&d).unwrap(), m);
    drop(store);
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.stats().blobs, 1, "sidecar is not indexed as a blob");
    assert_eq!(store.read_metainfo(&d).unwrap(), m);
    store.delete(&d).unwrap();
    assert!(store.read_metainfo(&d).is_none());
    assert_eq!(store.stat(&d), None);
}

#[test]
fn rejects_bad_watermarks() {
    let dir = tempfile::tempdir().unwrap();
    let bad = StoreConfig {
        capacity_bytes: 10,
        high_watermark: 0.5,
        low_watermark: 0.8,
    };
    assert!(matches!(
        BlobStore::open(dir.path(), bad),
        Err(StoreError::Watermarks { .. })
    ));
}

#[tokio::test]
async fn chunk_stream_reads_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    let data: Vec<u8> = (0..(READ_CHUNK * 2 + 17))
        .map(|i| (i % 253) as u8)
        .collect();
    let d = put(&store, &data);
    for range in [0..data.len() as u64, 5..(READ_CHUNK as u64 + 9), 10..10] {
        let mut got = Vec::new();
        let mut s = store.open_blob(&d).unwrap().into_chunks(range.clone());
        while let Some(c) = s.next().await {
            got.extend_from_slice(&c.unwrap());
        }
        assert_eq!(got, &data[range.start as usize..range.end as usize]);
    }
}

#[test]
fn parallel_hashing_and_background_flush_give_the_same_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    // Past the 64 MiB background-flush threshold, in uneven chunks, mixing both write paths.
    let data: Vec<u8> = (0..(70 << 20) + 5)
        .map(|i: usize| (i % 251) as u8)
        .collect();
    let d = Digest::compute(Algorithm::Sha256, &data);
    let mut t = store.create_temp().unwrap();
    let (head, rest) = data.split_at(1000);
    t.write(head).unwrap();
    for c in rest.chunks(3 << 20) {
        t.write_bytes(bytes::Bytes::copy_from_slice(c)).unwrap();
    }
    assert_eq!(t.len(), data.len() as u64);
    assert_eq!(store.commit(t, &d).unwrap(), data.len() as u64);
    let mut t = store.create_temp().unwrap();
    t.write_bytes(bytes::Bytes::from_static(b"abc")).unwrap();
    let wrong = Digest::compute(Algorithm::Sha256, b"abd");
    assert!(matches!(
        store.commit(t, &wrong),
        Err(StoreError::DigestMismatch(_))
    ));
}

#[test]
fn namespaces_are_recorded_survive_reopen_and_go_with_the_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    let d = put(&store, b"shared layer");
    let a: RepoName = "team/a".parse().unwrap();
    let b: RepoName = "b".parse().unwrap();
    assert!(store.namespaces(&d).unwrap().is_empty());
    assert!(store.add_namespace(&d, &a).unwrap());
    assert!(store.add_namespace(&d, &b).unwrap());
    assert!(!store.add_namespace(&d, &a).unwrap(), "idempotent");
    let missing = Digest::compute(Algorithm::Sha256, b"missing");
    assert!(matches!(
        store.add_namespace(&missing, &a),
        Err(StoreError::NotFound(_))
    ));
    drop(store);
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(
        store.stats().blobs,
        1,
        "the sidecar is not indexed as a blob"
    );
    assert_eq!(store.namespaces(&d).unwrap(), [a.clone(), b]);
    store.delete(&d).unwrap();
    assert!(store.namespaces(&d).unwrap().is_empty());
    // A blob stored again starts over.
    let d = put(&store, b"shared layer");
    assert!(store.namespaces(&d).unwrap().is_empty());
    assert!(store.add_namespace(&d, &a).unwrap());
}

#[test]
fn list_pages_in_digest_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    let mut all: Vec<(Digest, u64)> = (0..25u8)
        .map(|i| {
            let data = vec![i; usize::from(i) + 1];
            (put(&store, &data), u64::from(i) + 1)
        })
        .collect();
    all.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list(after.as_ref(), 10);
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        after = Some(last.0);
        seen.extend(page);
    }
    assert_eq!(seen, all);
    assert!(store.list(None, 0).is_empty());
}

#[test]
fn delete_unpinned_spares_pinned_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    let d = put(&store, b"pinned");
    store.pin(&d);
    assert!(store.is_pinned(&d));
    assert!(!store.delete_unpinned(&d).unwrap());
    assert_eq!(store.stat(&d), Some(6));
    store.unpin(&d);
    assert!(!store.is_pinned(&d));
    assert!(store.delete_unpinned(&d).unwrap());
    assert_eq!(store.stat(&d), None);
    assert!(!store.delete_unpinned(&d).unwrap(), "already gone");
    drop(store);
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.stats().blobs, 0, "its file is gone too");
}

#[test]
fn verified_upload_brings_its_chained_metainfo_from_the_same_hash_pass() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), StoreConfig::default()).unwrap();
    // 3.5 strides, written both ways (inline hash, and on the helper thread).
    let data: Vec<u8> = (0..(7 * CHECKPOINT_STRIDE as usize / 2))
        .map(|i| (i * 7 % 253) as u8)
        .collect();
    let d = Digest::compute(Algorithm::Sha256, &data);
    for background in [false, true] {
        let mut t = store.create_temp().unwrap();
        for part in data.chunks(100_000) {
            if background {
                t.write_bytes(bytes::Bytes::copy_from_slice(part)).unwrap();
            } else {
                t.write(part).unwrap();
            }
        }
        let verified = store.verify(t, &d).unwrap();
        for piece_len in [CHECKPOINT_STRIDE, 2 * CHECKPOINT_STRIDE, 4 << 20] {
            let mut b = shoal_core::MetaInfoBuilder::new(Algorithm::Sha256, piece_len).unwrap();
            b.update(&data);
            assert_eq!(
                verified.chained_metainfo(piece_len).unwrap(),
                b.finish(d).unwrap(),
                "background {background}, pieces of {piece_len}"
            );
        }
        assert!(verified.chained_metainfo(CHECKPOINT_STRIDE / 2).is_none());
        store.publish(verified).unwrap();
    }
    // A sha512 digest is checked by a second read, and brings no chain.
    let d512 = Digest::compute(Algorithm::Sha512, &data);
    let mut t = store.create_temp().unwrap();
    t.write(&data).unwrap();
    let verified = store.verify(t, &d512).unwrap();
    assert!(verified.chained_metainfo(CHECKPOINT_STRIDE).is_none());
}

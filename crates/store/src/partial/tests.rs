use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::seq::SliceRandom;
use shoal_core::{Algorithm, MetaInfoBuilder, PieceLayout};

use super::*;
use crate::StoreConfig;

/// Deterministic pseudo-random content.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

fn meta_with_digest(data: &[u8], piece_len: u32, digest: Digest) -> MetaInfo {
    let mut b = MetaInfoBuilder::new(digest.algorithm(), piece_len).unwrap();
    b.update(data);
    b.finish(digest).unwrap()
}

fn meta_for(data: &[u8], piece_len: u32, alg: Algorithm) -> MetaInfo {
    meta_with_digest(data, piece_len, Digest::compute(alg, data))
}

fn piece_of<'a>(meta: &MetaInfo, data: &'a [u8], p: PieceIndex) -> &'a [u8] {
    let r = meta.layout().range(p);
    &data[r.start as usize..r.end as usize]
}

fn paths(dir: &Path, d: &Digest) -> (PathBuf, PathBuf) {
    let base = dir.join("partial").join(d.algorithm().name()).join(d.hex());
    (base.clone(), base.with_extension("status"))
}

fn open(dir: &Path) -> BlobStore {
    BlobStore::open(dir, StoreConfig::default()).unwrap()
}

fn write_all(partial: &PartialBlob, data: &[u8], pieces: impl IntoIterator<Item = PieceIndex>) {
    for p in pieces {
        let w = partial
            .write_piece(p, piece_of(partial.meta(), data, p))
            .unwrap();
        assert_eq!(w, PieceWrite::Stored, "piece {p}");
    }
}

fn read_blob(store: &BlobStore, d: &Digest) -> Vec<u8> {
    let r = store.open_blob(d).unwrap();
    let mut buf = vec![0u8; r.size() as usize];
    assert_eq!(r.read_at(0, &mut buf).unwrap(), buf.len());
    buf
}

#[test]
fn is_send_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<PartialBlob>();
}

#[test]
fn random_order_with_short_last_piece_then_finish() {
    // Independent piece hashes (sha256 with 100-byte pieces, sha512) and a SHA-256 chain
    // (128-byte pieces), whose finish does not hash the blob again.
    for (alg, piece_len, chained) in [
        (Algorithm::Sha256, 100, false),
        (Algorithm::Sha512, 100, false),
        (Algorithm::Sha256, 128, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let data = content(1037, 1);
        let meta = meta_for(&data, piece_len, alg);
        assert_eq!(meta.pieces_prove_digest(), chained);
        let d = meta.digest();
        let count = meta.layout().piece_count();
        assert_eq!(count, 1037_u32.div_ceil(piece_len));
        let partial = store.partial(&meta).unwrap();
        assert_eq!(partial.have().count_ones(), 0);
        let (data_path, status_path) = paths(dir.path(), &d);
        assert_eq!(fs::metadata(&data_path).unwrap().len(), 1037);
        assert_eq!(fs::metadata(&status_path).unwrap().len(), u64::from(count));

        let mut order: Vec<_> = meta.layout().pieces().collect();
        order.shuffle(&mut rand::rng());
        let last = meta.layout().piece(count - 1).unwrap();
        for (n, &p) in order.iter().enumerate() {
            assert_eq!(partial.read_piece(p, &BufferPool::new(0)).unwrap(), None);
            write_all(&partial, &data, [p]);
            assert_eq!(
                partial.read_piece(p, &BufferPool::new(0)).unwrap().unwrap(),
                piece_of(&meta, &data, p)
            );
            assert_eq!(partial.have().count_ones() as usize, n + 1);
            // Not visible as a blob until finished.
            assert_eq!(store.stat(&d), None);
        }
        assert_eq!(
            partial
                .read_piece(last, &BufferPool::new(0))
                .unwrap()
                .unwrap()
                .len() as u32,
            1037 % piece_len
        );
        assert!(partial.is_complete());
        assert_eq!(partial.contiguous_prefix_len(), 1037);
        assert_eq!(fs::read(&status_path).unwrap(), vec![1; count as usize]);

        assert_eq!(partial.finish().unwrap(), 1037);
        assert_eq!(store.stat(&d), Some(1037));
        assert_eq!(store.stats().bytes, 1037);
        assert_eq!(read_blob(&store, &d), data);
        assert_eq!(store.read_metainfo(&d), Some(meta.clone()));
        assert!(!data_path.exists() && !status_path.exists());
        // Finishing twice is fine; the handle still reads; every piece is a duplicate now.
        assert_eq!(partial.finish().unwrap(), 1037);
        assert_eq!(
            partial
                .read_piece(last, &BufferPool::new(0))
                .unwrap()
                .unwrap(),
            piece_of(&meta, &data, last)
        );
        assert_eq!(
            partial
                .write_piece(last, piece_of(&meta, &data, last))
                .unwrap(),
            PieceWrite::Duplicate
        );
        // Survives a reopen as an ordinary blob.
        drop((partial, store));
        let store = open(dir.path());
        assert_eq!(read_blob(&store, &d), data);
    }
}

#[test]
fn corrupt_pieces_are_rejected_and_duplicates_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = content(350, 2);
    let meta = meta_for(&data, 100, Algorithm::Sha256);
    let partial = store.partial(&meta).unwrap();
    let (_, status_path) = paths(dir.path(), &meta.digest());
    let p1 = meta.layout().piece(1).unwrap();
    let good = piece_of(&meta, &data, p1);

    let mut bad = good.to_vec();
    bad[7] ^= 0x40;
    assert_eq!(partial.write_piece(p1, &bad).unwrap(), PieceWrite::Corrupt);
    assert_eq!(
        partial.write_piece(p1, &good[..99]).unwrap(),
        PieceWrite::Corrupt
    );
    // The last piece is 50 bytes: a full-length one does not fit.
    let last = meta.layout().piece(3).unwrap();
    assert_eq!(
        partial.write_piece(last, &data[250..350]).unwrap(),
        PieceWrite::Corrupt
    );
    // An index from another layout, beyond this blob's pieces.
    let other = PieceLayout::new(10_000, 100).unwrap().piece(50).unwrap();
    assert_eq!(
        partial.write_piece(other, good).unwrap(),
        PieceWrite::Corrupt
    );
    assert_eq!(
        partial.read_piece(other, &BufferPool::new(0)).unwrap(),
        None
    );
    assert_eq!(partial.have().count_ones(), 0);
    assert_eq!(fs::read(&status_path).unwrap(), vec![0; 4]);

    assert_eq!(partial.write_piece(p1, good).unwrap(), PieceWrite::Stored);
    assert_eq!(
        partial.write_piece(p1, good).unwrap(),
        PieceWrite::Duplicate
    );
    // Corrupt data for a present piece is still reported as corrupt.
    assert_eq!(partial.write_piece(p1, &bad).unwrap(), PieceWrite::Corrupt);
    assert_eq!(fs::read(&status_path).unwrap(), vec![0, 1, 0, 0]);
    assert_eq!(
        partial
            .read_piece(p1, &BufferPool::new(0))
            .unwrap()
            .unwrap(),
        good
    );
}

#[test]
fn prefix_and_read_at_cover_only_present_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = content(1037, 3);
    let meta = meta_for(&data, 100, Algorithm::Sha256);
    let l = meta.layout();
    let partial = store.partial(&meta).unwrap();
    assert_eq!(partial.contiguous_prefix_len(), 0);
    let mut buf = vec![0u8; 2000];
    assert_eq!(partial.read_at(0, &mut buf).unwrap(), 0);

    write_all(&partial, &data, [3, 1, 10].map(|i| l.piece(i).unwrap()));
    assert_eq!(partial.contiguous_prefix_len(), 0);
    write_all(&partial, &data, [l.piece(0).unwrap()]);
    assert_eq!(partial.contiguous_prefix_len(), 200);
    assert_eq!(partial.read_at(0, &mut buf).unwrap(), 200);
    assert_eq!(&buf[..200], &data[..200]);
    assert_eq!(partial.read_at(150, &mut buf[..30]).unwrap(), 30);
    assert_eq!(&buf[..30], &data[150..180]);
    assert_eq!(partial.read_at(250, &mut buf).unwrap(), 0);
    assert_eq!(partial.read_at(350, &mut buf).unwrap(), 50);
    assert_eq!(&buf[..50], &data[350..400]);
    assert_eq!(partial.read_at(1010, &mut buf).unwrap(), 27);
    assert_eq!(&buf[..27], &data[1010..]);
    assert_eq!(partial.read_at(1037, &mut buf).unwrap(), 0);
    assert_eq!(partial.read_at(u64::MAX, &mut buf).unwrap(), 0);

    write_all(&partial, &data, [2].map(|i| l.piece(i).unwrap()));
    assert_eq!(partial.contiguous_prefix_len(), 400);
    write_all(&partial, &data, (4..10).map(|i| l.piece(i).unwrap()));
    assert_eq!(partial.contiguous_prefix_len(), 1037);
    assert_eq!(partial.read_at(0, &mut buf).unwrap(), 1037);
    assert_eq!(&buf[..1037], &data[..]);
}

#[test]
fn concurrent_writers_store_each_piece_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = Arc::new(content(64 * 1024 + 5, 4));
    let meta = meta_for(&data, 1024, Algorithm::Sha256);
    let partial = store.partial(&meta).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (partial, data, meta) = (partial.clone(), Arc::clone(&data), meta.clone());
            std::thread::spawn(move || {
                // Every thread offers every piece, in its own order: lots of races.
                let mut order: Vec<_> = meta.layout().pieces().collect();
                order.shuffle(&mut rand::rng());
                let mut stored = 0;
                for p in order {
                    match partial.write_piece(p, piece_of(&meta, &data, p)).unwrap() {
                        PieceWrite::Stored => stored += 1,
                        PieceWrite::Duplicate => {}
                        PieceWrite::Corrupt => panic!("piece {p} corrupt"),
                    }
                }
                stored
            })
        })
        .collect();
    let stored: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(stored, meta.layout().piece_count());
    assert!(partial.is_complete());
    assert_eq!(partial.finish().unwrap(), data.len() as u64);
    assert_eq!(read_blob(&store, &meta.digest()), *data);
}

#[test]
fn handles_for_one_digest_share_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = content(300, 5);
    let meta = meta_for(&data, 100, Algorithm::Sha256);
    let a = store.partial(&meta).unwrap();
    let b = store.partial(&meta).unwrap();
    write_all(&a, &data, meta.layout().piece(1));
    assert_eq!(b.have(), a.have());
    // Same digest, other piece length: refused while the first download is open.
    let other = meta_for(&data, 50, Algorithm::Sha256);
    assert!(matches!(
        store.partial(&other),
        Err(StoreError::Io { ref source, .. }) if source.kind() == io::ErrorKind::AlreadyExists
    ));
    drop((a, b));
    // Once closed, the other metainfo may take over: the marked piece does not re-verify
    // against the new piece hashes, so it starts from nothing.
    let c = store.partial(&other).unwrap();
    assert_eq!(c.have().count_ones(), 0);
    assert_eq!(c.have().len(), 6);
}

#[test]
fn resume_after_restart_keeps_written_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(1037, 6);
    let meta = meta_for(&data, 100, Algorithm::Sha256);
    let l = meta.layout();
    let (half, rest): (Vec<_>, Vec<_>) = l.pieces().partition(|p| p.get() % 2 == 0);
    {
        let store = open(dir.path());
        let partial = store.partial(&meta).unwrap();
        write_all(&partial, &data, half.iter().copied());
        // Restart: the partial and the store go away without finishing.
    }
    let store = open(dir.path());
    // `open` does not index partial downloads as blobs.
    assert_eq!(store.stats().blobs, 0);
    assert_eq!(store.stat(&meta.digest()), None);
    let partial = store.partial(&meta).unwrap();
    let have = partial.have();
    assert_eq!(have.ones().collect::<Vec<_>>(), vec![0, 2, 4, 6, 8, 10]);
    assert_eq!(partial.contiguous_prefix_len(), 100);
    assert!(matches!(
        partial.finish(),
        Err(StoreError::Incomplete {
            have: 6,
            pieces: 11,
            ..
        })
    ));
    write_all(&partial, &data, rest);
    assert_eq!(partial.finish().unwrap(), 1037);
    assert_eq!(read_blob(&store, &meta.digest()), data);
}

#[test]
fn resume_drops_marked_pieces_that_do_not_verify() {
    // Independent piece hashes (100-byte pieces) and a SHA-256 chain (128-byte pieces), where
    // each piece verifies from the checkpoint before it.
    for piece_len in [100u32, 128] {
        let dir = tempfile::tempdir().unwrap();
        let data = content(1000, 7);
        let meta = meta_for(&data, piece_len, Algorithm::Sha256);
        assert_eq!(meta.pieces_prove_digest(), piece_len == 128);
        let l = meta.layout();
        let count = l.piece_count() as usize;
        let (data_path, status_path) = paths(dir.path(), &meta.digest());
        {
            let store = open(dir.path());
            let partial = store.partial(&meta).unwrap();
            write_all(&partial, &data, (0..6).map(|i| l.piece(i).unwrap()));
        }
        // Power-loss style damage: piece 2's data is garbage, piece 6 is marked but was never
        // written, piece 4 has a status byte that means nothing.
        let f = fs::OpenOptions::new().write(true).open(&data_path).unwrap();
        f.write_all_at(b"garbage", 2 * u64::from(piece_len) + 30)
            .unwrap();
        let s = fs::OpenOptions::new()
            .write(true)
            .open(&status_path)
            .unwrap();
        s.write_all_at(&[7], 4).unwrap();
        s.write_all_at(&[1], 6).unwrap();
        drop((f, s));

        let store = open(dir.path());
        let partial = store.partial(&meta).unwrap();
        assert_eq!(partial.have().ones().collect::<Vec<_>>(), vec![0, 1, 3, 5]);
        assert_eq!(partial.contiguous_prefix_len(), 2 * u64::from(piece_len));
        let mut marks = vec![0u8; count];
        for i in [0, 1, 3, 5] {
            marks[i] = 1;
        }
        assert_eq!(fs::read(&status_path).unwrap(), marks);
        assert_eq!(
            partial
                .read_piece(l.piece(2).unwrap(), &BufferPool::new(0))
                .unwrap(),
            None
        );
        let missing = [2, 4].into_iter().chain(6..count as u32);
        write_all(&partial, &data, missing.map(|i| l.piece(i).unwrap()));
        assert_eq!(partial.finish().unwrap(), 1000);
        assert_eq!(read_blob(&store, &meta.digest()), data);
    }
}

#[test]
fn files_of_the_wrong_length_start_over() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(1000, 8);
    let meta = meta_for(&data, 100, Algorithm::Sha256);
    let l = meta.layout();
    let (data_path, status_path) = paths(dir.path(), &meta.digest());
    let store = open(dir.path());
    let fill = |store: &BlobStore| {
        let partial = store.partial(&meta).unwrap();
        write_all(&partial, &data, (0..5).map(|i| l.piece(i).unwrap()));
    };
    let reopen_is_fresh = |store: &BlobStore| {
        let partial = store.partial(&meta).unwrap();
        assert_eq!(partial.have().count_ones(), 0);
        assert_eq!(fs::metadata(&data_path).unwrap().len(), 1000);
        assert_eq!(fs::read(&status_path).unwrap(), vec![0; 10]);
    };

    // Truncated status file.
    fill(&store);
    fs::OpenOptions::new()
        .write(true)
        .open(&status_path)
        .unwrap()
        .set_len(3)
        .unwrap();
    reopen_is_fresh(&store);
    // Status file with extra bytes.
    fill(&store);
    let mut long = fs::read(&status_path).unwrap();
    long.push(1);
    fs::write(&status_path, long).unwrap();
    reopen_is_fresh(&store);
    // Data file too short, too long, or missing.
    for len in [999, 1001] {
        fill(&store);
        fs::OpenOptions::new()
            .write(true)
            .open(&data_path)
            .unwrap()
            .set_len(len)
            .unwrap();
        reopen_is_fresh(&store);
    }
    fill(&store);
    fs::remove_file(&data_path).unwrap();
    reopen_is_fresh(&store);
    // Status file missing.
    fill(&store);
    fs::remove_file(&status_path).unwrap();
    reopen_is_fresh(&store);
}

#[test]
fn whole_blob_digest_mismatch_discards_the_download() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = content(1037, 9);
    let wrong = Digest::compute(Algorithm::Sha256, b"something else");
    // Piece hashes match `data`, the digest does not.
    let meta = meta_with_digest(&data, 100, wrong);
    let (data_path, status_path) = paths(dir.path(), &wrong);
    let partial = store.partial(&meta).unwrap();
    write_all(&partial, &data, meta.layout().pieces());
    assert!(partial.is_complete());
    let err = partial.finish().unwrap_err();
    match &err {
        StoreError::DigestMismatch(m) => {
            assert_eq!(m.expected, wrong);
            assert_eq!(m.actual, Digest::compute(Algorithm::Sha256, &data));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(!data_path.exists() && !status_path.exists());
    assert_eq!(store.stat(&wrong), None);
    assert_eq!(store.stats().blobs, 0);
    assert!(store.read_metainfo(&wrong).is_none());
    // The handle is dead.
    let p0 = meta.layout().piece(0).unwrap();
    assert!(matches!(
        partial.write_piece(p0, &data[..100]),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        partial.read_piece(p0, &BufferPool::new(0)),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(partial.finish(), Err(StoreError::NotFound(_))));
    // A new download starts over.
    let again = store.partial(&meta).unwrap();
    assert_eq!(again.have().count_ones(), 0);
}

#[test]
fn abandon_deletes_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let data = content(500, 10);
    let meta = meta_for(&data, 100, Algorithm::Sha256);
    let (data_path, status_path) = paths(dir.path(), &meta.digest());
    let partial = store.partial(&meta).unwrap();
    let other_handle = partial.clone();
    write_all(&partial, &data, meta.layout().piece(0));
    partial.abandon().unwrap();
    assert!(!data_path.exists() && !status_path.exists());
    let p1 = meta.layout().piece(1).unwrap();
    assert!(matches!(
        other_handle.write_piece(p1, &data[100..200]),
        Err(StoreError::NotFound(_))
    ));
    let mut buf = [0u8; 10];
    assert!(other_handle.read_at(0, &mut buf).is_err());
    let fresh = store.partial(&meta).unwrap();
    assert_eq!(fresh.have().count_ones(), 0);
    // Abandoning after a finish leaves the blob alone.
    write_all(&fresh, &data, meta.layout().pieces());
    fresh.finish().unwrap();
    fresh.abandon().unwrap();
    assert_eq!(read_blob(&store, &meta.digest()), data);
}

#[test]
fn empty_blob_finishes_immediately() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let meta = meta_for(b"", 100, Algorithm::Sha256);
    let partial = store.partial(&meta).unwrap();
    assert!(partial.is_complete());
    assert_eq!(partial.have().len(), 0);
    assert_eq!(partial.contiguous_prefix_len(), 0);
    assert_eq!(partial.finish().unwrap(), 0);
    assert_eq!(read_blob(&store, &meta.digest()), b"");
    let (data_path, status_path) = paths(dir.path(), &meta.digest());
    assert!(!data_path.exists() && !status_path.exists());
}

#[test]
fn finished_blobs_count_towards_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        capacity_bytes: 2000,
        high_watermark: 0.9,
        low_watermark: 0.5,
    };
    let store = BlobStore::open(dir.path(), config).unwrap();
    let old = content(900, 11);
    let old_digest = Digest::compute(Algorithm::Sha256, &old);
    let mut t = store.create_temp().unwrap();
    t.write(&old).unwrap();
    store.commit(t, &old_digest).unwrap();
    // A big partial download does not count until it is finished.
    let data = content(1000, 12);
    let meta = meta_for(&data, 100, Algorithm::Sha256);
    let partial = store.partial(&meta).unwrap();
    write_all(&partial, &data, meta.layout().pieces());
    assert_eq!(store.stats().bytes, 900);
    partial.finish().unwrap();
    // 1900 > 1800: the older blob goes.
    assert_eq!(store.stat(&old_digest), None);
    assert_eq!(store.stat(&meta.digest()), Some(1000));
    assert_eq!(store.stats().evictions, 1);
}

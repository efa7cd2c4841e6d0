//! Conformance checks every read-write [`Backend`] must pass; shared by the backend tests.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod serve;

use std::io;
use std::ops::Range;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use shoal_backend::{Backend, BackendError, ByteStream, ListRequest, ObjectKey};
use shoal_core::RepoName;

/// The namespace the checks use.
pub fn ns() -> RepoName {
    "conformance/repo".parse().unwrap()
}

/// A key under the test's own `scope`.
pub fn key(scope: &str, rest: &str) -> ObjectKey {
    ObjectKey::new(format!("{scope}/{rest}")).unwrap()
}

/// Deterministic, non-repeating-looking content.
pub fn data(len: usize, seed: u8) -> Bytes {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect::<Vec<u8>>()
        .into()
}

/// `data` as a stream of `chunk`-byte pieces (zero-copy slices).
pub fn body(data: &Bytes, chunk: usize) -> ByteStream {
    let data = data.clone();
    let len = data.len();
    futures_util::stream::iter((0..len).step_by(chunk.max(1)))
        .map(move |start| Ok(data.slice(start..(start + chunk).min(len))))
        .boxed()
}

/// Reads a whole stream.
pub async fn collect(stream: ByteStream) -> Vec<u8> {
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    chunks.concat()
}

/// Reads `key` (or a range of it).
pub async fn read(backend: &dyn Backend, key: &ObjectKey, range: Option<Range<u64>>) -> Vec<u8> {
    collect(backend.get(&ns(), key, range).await.unwrap()).await
}

/// Put, stat, get, overwrite.
pub async fn put_get(backend: &dyn Backend, scope: &str) {
    let k = key(scope, "blob");
    let content = data(100_000, 1);
    backend
        .put(&ns(), &k, content.len() as u64, body(&content, 4096))
        .await
        .unwrap();
    assert_eq!(backend.stat(&ns(), &k).await.unwrap().size, 100_000);
    assert_eq!(read(backend, &k, None).await, content);

    let replacement = data(10, 2);
    backend
        .put(&ns(), &k, 10, body(&replacement, 3))
        .await
        .unwrap();
    assert_eq!(backend.stat(&ns(), &k).await.unwrap().size, 10);
    assert_eq!(read(backend, &k, None).await, replacement);

    let empty = key(scope, "empty");
    backend
        .put(&ns(), &empty, 0, body(&Bytes::new(), 1))
        .await
        .unwrap();
    assert_eq!(backend.stat(&ns(), &empty).await.unwrap().size, 0);
    assert!(read(backend, &empty, None).await.is_empty());
}

/// Byte ranges, in and out of bounds.
pub async fn ranges(backend: &dyn Backend, scope: &str) {
    let k = key(scope, "ranged");
    let content = data(10_000, 3);
    backend
        .put(&ns(), &k, 10_000, body(&content, 1000))
        .await
        .unwrap();
    for r in [
        0..1,
        0..10_000,
        9_999..10_000,
        1234..5678,
        500..501,
        10_000..10_000,
        0..0,
    ] {
        let got = read(backend, &k, Some(r.clone())).await;
        assert_eq!(
            got,
            &content[r.start as usize..r.end as usize],
            "range {r:?}"
        );
    }
    for r in [0..10_001, 9_000..20_000, 10_000..10_001, 20_000..20_010] {
        match backend.get(&ns(), &k, Some(r.clone())).await {
            Err(BackendError::InvalidRange { start, end, size }) => {
                assert_eq!((start, end, size), (r.start, r.end, 10_000), "range {r:?}");
            }
            Err(e) => panic!("range {r:?}: expected InvalidRange, got {e:?}"),
            Ok(_) => panic!("range {r:?}: expected InvalidRange, got a stream"),
        }
    }
}

/// `stat` and `get` of `k` are `NotFound`.
pub async fn assert_not_found(backend: &dyn Backend, k: &ObjectKey) {
    assert!(matches!(
        backend.stat(&ns(), k).await,
        Err(BackendError::NotFound)
    ));
    assert!(matches!(
        backend.get(&ns(), k, None).await,
        Err(BackendError::NotFound)
    ));
}

/// `put` and `delete` of `k` are refused with `ReadOnly`.
pub async fn assert_read_only(backend: &dyn Backend, k: &ObjectKey) {
    let put = backend
        .put(&ns(), k, 1, body(&Bytes::from_static(b"x"), 1))
        .await;
    assert!(matches!(put, Err(BackendError::ReadOnly)));
    assert!(matches!(
        backend.delete(&ns(), k).await,
        Err(BackendError::ReadOnly)
    ));
}

/// A missing key is `NotFound` for stat and get; deleting it is fine.
pub async fn missing(backend: &dyn Backend, scope: &str) {
    let k = key(scope, "nothing-here");
    assert_not_found(backend, &k).await;
    assert!(matches!(
        backend.get(&ns(), &k, Some(0..1)).await,
        Err(BackendError::NotFound)
    ));
    backend.delete(&ns(), &k).await.unwrap();
}

/// Delete removes the object.
pub async fn delete(backend: &dyn Backend, scope: &str) {
    let k = key(scope, "doomed");
    backend
        .put(&ns(), &k, 3, body(&Bytes::from_static(b"abc"), 1))
        .await
        .unwrap();
    backend.stat(&ns(), &k).await.unwrap();
    backend.delete(&ns(), &k).await.unwrap();
    assert!(matches!(
        backend.stat(&ns(), &k).await,
        Err(BackendError::NotFound)
    ));
    backend.delete(&ns(), &k).await.unwrap();
}

/// Short, long and failing bodies are refused and leave nothing visible.
pub async fn bad_bodies(backend: &dyn Backend, scope: &str) {
    let short = key(scope, "short");
    let content = data(1000, 4);
    match backend.put(&ns(), &short, 2000, body(&content, 100)).await {
        Err(BackendError::BodyLength {
            expected: 2000,
            actual: 1000,
        }) => {}
        other => panic!("expected BodyLength, got {other:?}"),
    }
    let long = key(scope, "long");
    match backend.put(&ns(), &long, 500, body(&content, 100)).await {
        Err(BackendError::BodyLength { expected: 500, .. }) => {}
        other => panic!("expected BodyLength, got {other:?}"),
    }
    let failing = key(scope, "failing");
    let stream = futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(io::Error::other("client went away")),
    ])
    .boxed();
    assert!(backend.put(&ns(), &failing, 6, stream).await.is_err());
    for k in [&short, &long, &failing] {
        assert!(
            matches!(backend.stat(&ns(), k).await, Err(BackendError::NotFound)),
            "{k}"
        );
    }
    let page = backend
        .list(
            &ns(),
            ListRequest {
                prefix: format!("{scope}/"),
                after: None,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert!(page.keys.is_empty(), "{page:?}");
}

/// A large body, streamed in 64 KiB chunks (a multipart upload on object stores), with a short
/// body of the same size refused.
pub async fn large(backend: &dyn Backend, scope: &str, len: usize) {
    let k = key(scope, "large");
    let content = data(len, 5);
    backend
        .put(&ns(), &k, len as u64, body(&content, 64 * 1024))
        .await
        .unwrap();
    assert_eq!(backend.stat(&ns(), &k).await.unwrap().size, len as u64);
    let got = read(backend, &k, None).await;
    assert!(got == content, "large object differs");
    // Ranges across 1, 5 and 8 MiB boundaries.
    for mib in [1usize, 5, 8] {
        let at = mib << 20;
        if at + 1000 <= len {
            let r = (at - 1000) as u64..(at + 1000) as u64;
            assert_eq!(
                read(backend, &k, Some(r)).await,
                &content[at - 1000..at + 1000]
            );
        }
    }
    let truncated = key(scope, "large-truncated");
    let half = content.slice(..len / 2);
    assert!(matches!(
        backend
            .put(&ns(), &truncated, len as u64, body(&half, 64 * 1024))
            .await,
        Err(BackendError::BodyLength { .. })
    ));
    assert!(matches!(
        backend.stat(&ns(), &truncated).await,
        Err(BackendError::NotFound)
    ));
}

/// Pages through every key with `prefix`, `limit` at a time.
pub async fn list_all(backend: &dyn Backend, prefix: &str, limit: usize) -> Vec<String> {
    let mut keys = Vec::new();
    let mut after = None;
    for _ in 0..1000 {
        let page = backend
            .list(
                &ns(),
                ListRequest {
                    prefix: prefix.to_string(),
                    after: after.clone(),
                    limit,
                },
            )
            .await
            .unwrap();
        assert!(page.keys.len() <= limit, "{page:?}");
        keys.extend(page.keys.iter().map(|k| k.as_str().to_string()));
        match page.next {
            Some(next) => after = Some(next),
            None => return keys,
        }
    }
    panic!("listing did not terminate");
}

/// Listing with prefixes that end mid-segment, pagination and `after`.
pub async fn listing(backend: &dyn Backend, scope: &str) {
    let names = [
        "a/1", "a/2", "a/sub/3", "a.b", "a10/x", "ab", "b/1", "b/2", "c", "aa/z",
    ];
    for name in names {
        backend
            .put(
                &ns(),
                &key(scope, name),
                1,
                body(&Bytes::from_static(b"x"), 1),
            )
            .await
            .unwrap();
    }
    let mut all: Vec<String> = names.iter().map(|n| format!("{scope}/{n}")).collect();
    all.sort();
    for prefix in ["", "a", "a/", "a/s", "a1", "b/", "c", "zz", "a/sub/3"] {
        let full = format!("{scope}/{prefix}");
        let want: Vec<String> = all
            .iter()
            .filter(|k| k.starts_with(&full))
            .cloned()
            .collect();
        for limit in [1, 2, 3, 100] {
            assert_eq!(
                list_all(backend, &full, limit).await,
                want,
                "prefix {full:?} limit {limit}"
            );
        }
    }
    // One page exactly: no `next` when nothing is left.
    let page = backend
        .list(
            &ns(),
            ListRequest {
                prefix: format!("{scope}/b/"),
                after: None,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.keys.len(), 2);
    assert_eq!(page.next, None);
    // Resuming after an arbitrary key (not necessarily one on a page boundary).
    let page = backend
        .list(
            &ns(),
            ListRequest {
                prefix: format!("{scope}/"),
                after: Some(key(scope, "a10/x")),
                limit: 2,
            },
        )
        .await
        .unwrap();
    let got: Vec<&str> = page.keys.iter().map(ObjectKey::as_str).collect();
    let want: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|k| *k > format!("{scope}/a10/x").as_str())
        .take(2)
        .collect();
    assert_eq!(got, want);
    assert!(page.next.is_some());
}

/// Blob keys made by `ObjectKey::for_blob` work end to end.
pub async fn blob_keys(backend: &dyn Backend) {
    let content = data(4321, 6);
    let digest = shoal_core::Digest::compute(shoal_core::Algorithm::Sha256, &content);
    let k = ObjectKey::for_blob(&digest);
    backend
        .put(&ns(), &k, 4321, body(&content, 1000))
        .await
        .unwrap();
    assert_eq!(read(backend, &k, None).await, content);
    let listed = list_all(backend, &format!("blobs/sha256/{}", &digest.hex()[..1]), 10).await;
    assert!(listed.contains(&k.as_str().to_string()), "{listed:?}");
    backend.delete(&ns(), &k).await.unwrap();
}

/// Every check above; `large_len` sizes the large-object check.
pub async fn run_all(backend: &dyn Backend, large_len: usize) {
    put_get(backend, "put-get").await;
    ranges(backend, "ranges").await;
    missing(backend, "missing").await;
    delete(backend, "delete").await;
    bad_bodies(backend, "bad-bodies").await;
    listing(backend, "listing").await;
    blob_keys(backend).await;
    large(backend, "large", large_len).await;
}

//! The client against a real in-process origin (filesystem backend, port 0).
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use futures_util::TryStreamExt;
use shoal_core::{Algorithm, Digest, RepoName};
use shoal_origin::{Origin, OriginConfig};
use shoal_origin_client::{ByteStream, OriginClient, OriginClientError};
use tokio_util::sync::CancellationToken;

struct Running {
    client: OriginClient,
    token: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn origin() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = OriginConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        ..OriginConfig::default()
    };
    config.p2p.enabled = false;
    let origin = Origin::bind(config).await.unwrap();
    let client = OriginClient::new(&format!("http://{}", origin.local_addr())).unwrap();
    let token = CancellationToken::new();
    tokio::spawn(origin.run(token.clone()));
    Running {
        client,
        token,
        _dir: dir,
    }
}

fn body(data: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

async fn collect(stream: ByteStream) -> Vec<u8> {
    stream
        .try_fold(Vec::new(), |mut acc, b| async move {
            acc.extend_from_slice(&b);
            Ok(acc)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn put_stat_get_range_delete() {
    let o = origin().await;
    let ns: RepoName = "team/app".parse().unwrap();
    let data = shoal_testkit::pseudo_random_bytes(3 << 20, 7);
    let d = Digest::compute(Algorithm::Sha256, &data);
    assert_eq!(o.client.stat(&ns, &d).await.unwrap(), None);
    assert!(o.client.get(&ns, &d).await.unwrap().is_none());

    let size = o
        .client
        .put(&ns, &d, body(&data, 100_000), Some(data.len() as u64))
        .await
        .unwrap();
    assert_eq!(size, data.len() as u64);
    assert_eq!(o.client.stat(&ns, &d).await.unwrap(), Some(size));

    let (len, stream) = o.client.get(&ns, &d).await.unwrap().unwrap();
    assert_eq!(len, size);
    assert_eq!(collect(stream).await, data);
    let part = o
        .client
        .get_range(&ns, &d, 10..1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(collect(part).await, &data[10..1000]);

    let err = o.client.get_bytes(&ns, &d, 1024).await.unwrap_err();
    assert_eq!(err.code(), Some("SIZE_INVALID"));

    assert!(o.client.delete(&ns, &d).await.unwrap());
    assert_eq!(o.client.stat(&ns, &d).await.unwrap(), None);
    assert!(!o.client.delete(&ns, &d).await.unwrap());
    o.token.cancel();
}

#[tokio::test]
async fn wrong_digest_is_rejected_and_nothing_stored() {
    let o = origin().await;
    let ns: RepoName = "app".parse().unwrap();
    let data = b"hello".to_vec();
    let wrong = Digest::compute(Algorithm::Sha256, b"other");
    let err = o
        .client
        .put(&ns, &wrong, body(&data, 2), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OriginClientError::Rejected { status: 400, code, .. } if code == "DIGEST_INVALID"),
        "{err:?}"
    );
    assert_eq!(o.client.stat(&ns, &wrong).await.unwrap(), None);
    o.token.cancel();
}

#[tokio::test]
async fn chunked_upload_session() {
    let o = origin().await;
    let ns: RepoName = "app".parse().unwrap();
    let data = shoal_testkit::pseudo_random_bytes(1 << 20, 3);
    let d = Digest::compute(Algorithm::Sha256, &data);
    let id = o.client.start_upload(&ns).await.unwrap();
    assert_eq!(o.client.upload_offset(&ns, &id).await.unwrap(), Some(0));
    let half = data.len() / 2;
    let off = o
        .client
        .upload_chunk(&ns, &id, 0, body(&data[..half], 4096), Some(half as u64))
        .await
        .unwrap();
    assert_eq!(off, half as u64);
    assert_eq!(o.client.upload_offset(&ns, &id).await.unwrap(), Some(off));
    // A chunk at the wrong offset is refused with 416 and changes nothing.
    let err = o
        .client
        .upload_chunk(&ns, &id, 5, body(b"xx", 2), Some(2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OriginClientError::Rejected { status: 416, .. }),
        "{err:?}"
    );
    o.client
        .finish_upload(&ns, &id, &d, Some(body(&data[half..], 4096)))
        .await
        .unwrap();
    let got = o.client.get_bytes(&ns, &d, 2 << 20).await.unwrap().unwrap();
    assert_eq!(got, data);
    assert_eq!(o.client.upload_offset(&ns, &id).await.unwrap(), None);

    let id = o.client.start_upload(&ns).await.unwrap();
    o.client.cancel_upload(&ns, &id).await.unwrap();
    assert_eq!(o.client.upload_offset(&ns, &id).await.unwrap(), None);
    o.token.cancel();
}

#[tokio::test]
async fn unreachable_origin_is_unavailable() {
    let port = shoal_testkit::free_port();
    let client = OriginClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let ns: RepoName = "app".parse().unwrap();
    let d = Digest::compute(Algorithm::Sha256, b"x");
    let err = client.stat(&ns, &d).await.unwrap_err();
    assert!(
        matches!(err, OriginClientError::Unavailable { .. }),
        "{err:?}"
    );
    assert!(OriginClient::new("ftp://x").is_err());
}

#[tokio::test]
async fn listing_pages_through_the_cache_with_namespaces() {
    let o = origin().await;
    let (a, b): (RepoName, RepoName) = ("a".parse().unwrap(), "team/b".parse().unwrap());
    let mut expected = Vec::new();
    for (i, nss) in [vec![&a], vec![&a, &b], vec![&b]].into_iter().enumerate() {
        let data = shoal_testkit::pseudo_random_bytes(1000 + i, i as u64);
        let d = Digest::compute(Algorithm::Sha256, &data);
        for ns in &nss {
            o.client
                .put(ns, &d, body(&data, 300), Some(data.len() as u64))
                .await
                .unwrap();
        }
        expected.push((
            d,
            data.len() as u64,
            nss.into_iter().cloned().collect::<Vec<_>>(),
        ));
    }
    expected.sort_by_key(|e| e.0);

    let first = o.client.list_blobs(None, 2).await.unwrap();
    assert_eq!(first.blobs.len(), 2);
    let next = first.next.unwrap();
    assert_eq!(next, first.blobs[1].digest);
    let second = o.client.list_blobs(Some(&next), 2).await.unwrap();
    assert_eq!(second.next, None, "a short page is the last");
    let listed: Vec<_> = first
        .blobs
        .into_iter()
        .chain(second.blobs)
        .map(|e| (e.digest, e.size, e.namespaces))
        .collect();
    assert_eq!(listed, expected);

    // As a replica, a HEAD asks whether the blob is cached *under that namespace*; a plain
    // HEAD finds cached content under any namespace.
    let only_a = expected.iter().find(|e| e.2 == [a.clone()]).unwrap();
    let replica = o.client.as_replica();
    assert_eq!(replica.stat(&a, &only_a.0).await.unwrap(), Some(only_a.1));
    assert_eq!(replica.stat(&b, &only_a.0).await.unwrap(), None);
    assert_eq!(o.client.stat(&b, &only_a.0).await.unwrap(), Some(only_a.1));
    o.token.cancel();
}

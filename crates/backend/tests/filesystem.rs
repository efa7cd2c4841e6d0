//! The filesystem backend against the shared conformance checks, plus its own guarantees.

#![allow(clippy::unwrap_used)]

mod conformance;

use bytes::Bytes;
use conformance::{body, key, ns};
use shoal_backend::{Backend, BackendError, FilesystemBackend, ObjectKey, TEMP_DIR};

fn backend() -> (tempfile::TempDir, FilesystemBackend) {
    let dir = tempfile::tempdir().unwrap();
    let backend = FilesystemBackend::new(dir.path().join("root"));
    (dir, backend)
}

#[tokio::test]
async fn conformance() {
    let (_dir, backend) = backend();
    conformance::run_all(&backend, 12 << 20).await;
}

#[tokio::test]
async fn objects_are_files_under_the_root() {
    let (_dir, backend) = backend();
    let k = key("x", "y/z");
    backend
        .put(&ns(), &k, 5, body(&Bytes::from_static(b"hello"), 2))
        .await
        .unwrap();
    let path = backend.root().join("x/y/z");
    assert_eq!(std::fs::read(path).unwrap(), b"hello");
}

#[tokio::test]
async fn failed_puts_leave_no_temp_files() {
    let (_dir, backend) = backend();
    let content = conformance::data(5000, 9);
    let k = key("t", "short");
    assert!(matches!(
        backend.put(&ns(), &k, 6000, body(&content, 100)).await,
        Err(BackendError::BodyLength {
            expected: 6000,
            actual: 5000
        })
    ));
    assert!(matches!(
        backend.put(&ns(), &k, 10, body(&content, 100)).await,
        Err(BackendError::BodyLength { expected: 10, .. })
    ));
    let temp = backend.root().join(TEMP_DIR);
    assert_eq!(std::fs::read_dir(&temp).unwrap().count(), 0);
    assert!(!backend.root().join("t/short").exists());
    // A successful put leaves nothing behind either.
    backend
        .put(&ns(), &k, 5000, body(&content, 100))
        .await
        .unwrap();
    assert_eq!(std::fs::read_dir(&temp).unwrap().count(), 0);
}

#[tokio::test]
async fn temp_dir_is_not_a_key_space() {
    let (_dir, backend) = backend();
    let k = ObjectKey::new(format!("{TEMP_DIR}/x")).unwrap();
    assert!(matches!(
        backend
            .put(&ns(), &k, 1, body(&Bytes::from_static(b"x"), 1))
            .await,
        Err(BackendError::UnsupportedKey(_))
    ));
    assert!(matches!(
        backend.stat(&ns(), &k).await,
        Err(BackendError::UnsupportedKey(_))
    ));
    backend
        .put(&ns(), &key("a", "b"), 1, body(&Bytes::from_static(b"x"), 1))
        .await
        .unwrap();
    let all = conformance::list_all(&backend, "", 10).await;
    assert_eq!(all, ["a/b"]);
}

#[tokio::test]
async fn directories_are_not_objects() {
    let (_dir, backend) = backend();
    backend
        .put(&ns(), &key("d", "f"), 1, body(&Bytes::from_static(b"x"), 1))
        .await
        .unwrap();
    let dir_key = ObjectKey::new("d").unwrap();
    assert!(matches!(
        backend.stat(&ns(), &dir_key).await,
        Err(BackendError::NotFound)
    ));
    assert!(matches!(
        backend.get(&ns(), &dir_key, None).await,
        Err(BackendError::NotFound)
    ));
}

#[tokio::test]
async fn listing_an_empty_or_missing_root() {
    let (_dir, backend) = backend();
    assert!(conformance::list_all(&backend, "", 10).await.is_empty());
}

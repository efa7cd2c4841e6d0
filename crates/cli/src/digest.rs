//! `shoal digest`: the OCI digest of a file, computed while streaming it.

use std::path::Path;

use shoal_core::{Algorithm, Digest, DigestHasher};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::CliError;

/// Read buffer size.
const BUF: usize = 1 << 20;

/// The SHA-256 digest of the file at `path` (`-` for stdin), read in 1 MiB pieces.
pub async fn file_digest(path: &Path) -> Result<Digest, CliError> {
    let io = |e| CliError::io(path, e);
    if path.as_os_str() == "-" {
        return reader_digest(tokio::io::stdin()).await.map_err(io);
    }
    let file = tokio::fs::File::open(path).await.map_err(io)?;
    reader_digest(file).await.map_err(io)
}

async fn reader_digest(mut reader: impl AsyncRead + Unpin) -> std::io::Result<Digest> {
    let mut hasher = DigestHasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; BUF];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn matches_the_one_shot_digest() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let got = reader_digest(&data[..]).await.unwrap();
        assert_eq!(got, Digest::compute(Algorithm::Sha256, &data));
        assert_eq!(
            reader_digest(&b""[..]).await.unwrap().to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

//! Disk space reserved before the bytes arrive.
//!
//! A download's file is sized before its first piece. Sized sparsely (`set_len`), it claims
//! disk blocks only as pieces land, so a full disk shows up as a failed write half-way through,
//! when a reader may already be streaming the blob; and pieces landing in random order
//! fragment it. Reserved with `fallocate`, the space is claimed (or refused, with `ENOSPC`)
//! before anything is served, and the file system can lay the blob out in few extents.
//! (On the VM the project is measured on, writing into reserved blocks was no faster than
//! into a hole: the cost there is in allocating page-cache pages, which both pay.)

use std::fs::File;
use std::io;

/// Makes `file` exactly `len` bytes long with its blocks reserved: a full disk is an error now,
/// not a failed write later. Where the file system cannot reserve (no `fallocate`), the file
/// is sized sparsely instead.
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    file.set_len(0)?;
    if len > 0 && reserve(file, len)? {
        return Ok(());
    }
    file.set_len(len)
}

#[cfg(target_os = "linux")]
fn reserve(file: &File, len: u64) -> io::Result<bool> {
    use rustix::fs::{FallocateFlags, fallocate};
    use rustix::io::Errno;
    match fallocate(file, FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(true),
        // tmpfs before 3.5, some network and FUSE file systems.
        Err(Errno::OPNOTSUPP | Errno::NOSYS) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn reserve(_file: &File, _len: u64) -> io::Result<bool> {
    Ok(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::{FileExt, MetadataExt};

    use super::*;

    #[test]
    fn preallocated_file_has_its_size_and_its_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.path().join("f"))
            .unwrap();
        f.write_all_at(b"old content", 0).unwrap();
        preallocate(&f, 1 << 20).unwrap();
        let meta = f.metadata().unwrap();
        assert_eq!(meta.len(), 1 << 20);
        // Reads as zeros, old content gone.
        let mut buf = [1u8; 11];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [0u8; 11]);
        // Where the file system reserves space, the blocks are there (512-byte units).
        if reserve(&f, 1).unwrap() {
            assert!(meta.blocks() * 512 >= 1 << 20, "blocks: {}", meta.blocks());
        }
    }
}

//! The `.namespaces` sidecar: which namespaces (repositories) a blob was stored under.
//!
//! The store is content-addressed by digest alone; a service that writes blobs back to
//! per-namespace storage (the origin) records here under which namespaces each blob arrived, so
//! that a copy moved to another host can be written back and served under the same names.
//!
//! Format: one namespace per line, `\n`-terminated, appended (never rewritten). A line torn by
//! a crash (no trailing newline) is ignored; the next append first terminates it with `!\n`,
//! which no valid name contains, so the torn prefix never reads as a name.
//! Duplicate lines (two concurrent appends of the same name) are harmless: readers dedupe.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use shoal_core::RepoName;

use crate::{StoreError, io_err, sync_dir};

/// Parses a sidecar's content: valid, complete lines, deduplicated, in order of first
/// appearance.
pub(crate) fn parse(content: &str) -> Vec<RepoName> {
    let complete = match content.rfind('\n') {
        Some(end) => &content[..end],
        None => "",
    };
    let mut out: Vec<RepoName> = Vec::new();
    for line in complete.split('\n') {
        if let Ok(ns) = line.parse::<RepoName>()
            && !out.contains(&ns)
        {
            out.push(ns);
        }
    }
    out
}

/// Reads the namespaces recorded in `path` (none if the file does not exist).
pub(crate) fn read(path: &Path) -> Result<Vec<RepoName>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(parse(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("reading namespaces sidecar")(e)),
    }
}

/// Appends `ns` to the sidecar at `path` unless it is already recorded, durably (file fsync,
/// and a directory fsync when the file is new). Returns whether it was added.
pub(crate) fn add(path: &Path, ns: &RepoName) -> Result<bool, StoreError> {
    let existing = match fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("reading namespaces sidecar")(e)),
    };
    let content = existing
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    if parse(&content).contains(ns) {
        return Ok(false);
    }
    let mut line = String::with_capacity(ns.as_str().len() + 2);
    if !content.is_empty() && !content.ends_with('\n') {
        line.push_str("!\n"); // invalidates and terminates a torn line
    }
    line.push_str(ns.as_str());
    line.push('\n');
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err("opening namespaces sidecar"))?;
    // One write(2) with O_APPEND: concurrent appends do not interleave.
    file.write_all(line.as_bytes())
        .map_err(io_err("appending to namespaces sidecar"))?;
    file.sync_data()
        .map_err(io_err("syncing namespaces sidecar"))?;
    if existing.is_none()
        && let Some(dir) = path.parent()
    {
        sync_dir(dir)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names(v: &[RepoName]) -> Vec<&str> {
        v.iter().map(RepoName::as_str).collect()
    }

    #[test]
    fn parse_skips_torn_invalid_and_duplicate_lines() {
        assert!(parse("").is_empty());
        assert!(parse("torn").is_empty());
        assert_eq!(names(&parse("a\nb/c\na\nBAD\ntor")), ["a", "b/c"]);
    }

    #[test]
    fn add_is_idempotent_and_recovers_from_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.namespaces");
        assert!(read(&path).unwrap().is_empty());
        let a: RepoName = "a".parse().unwrap();
        let b: RepoName = "team/b".parse().unwrap();
        assert!(add(&path, &a).unwrap());
        assert!(!add(&path, &a).unwrap());
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"tea")
            .unwrap();
        assert!(add(&path, &b).unwrap());
        assert_eq!(names(&read(&path).unwrap()), ["a", "team/b"]);
        assert_eq!(fs::read_to_string(&path).unwrap(), "a\ntea!\nteam/b\n");
    }
}

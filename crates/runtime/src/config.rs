//! Loading TOML configuration files.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a configuration file could not be loaded. Always names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this service (syntax, types or unknown keys).
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error, with line and column.
        source: toml::de::Error,
    },
}

/// Loads `path` into `T`; with no path, returns `T::default()` (every service runs on defaults).
///
/// Service config structs use `#[serde(default, deny_unknown_fields)]`, so a misspelt key is an
/// error here rather than a silently ignored setting.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Parses TOML text into `T` (used by [`load`] and by tests of shipped config files).
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, toml::de::Error> {
    toml::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Example {
        name: String,
        count: u32,
    }

    #[test]
    fn loads_defaults_files_and_rejects_unknown_keys() {
        assert_eq!(load::<Example>(None).unwrap(), Example::default());
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "name = \"x\"\n").unwrap();
        let e: Example = load(Some(&good)).unwrap();
        assert_eq!(e.name, "x");
        assert_eq!(e.count, 0);

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "nmae = \"x\"\n").unwrap();
        let err = load::<Example>(Some(&bad)).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains("nmae"), "{err}");

        let missing = dir.path().join("missing.toml");
        assert!(matches!(
            load::<Example>(Some(&missing)),
            Err(ConfigError::Read { .. })
        ));
    }
}

//! Object keys: validated relative paths inside a backend.

use std::fmt;
use std::str::FromStr;

use shoal_core::Digest;

/// Longest accepted key, in bytes (S3's limit).
const MAX_KEY_LEN: usize = 1024;

/// The key of an object in a backend: a relative, `/`-separated path.
///
/// A key is non-empty, at most 1024 bytes, does not start or end with `/`, has no empty, `.`
/// or `..` segments, and contains no backslash and no ASCII control characters. These rules
/// make every key safe to join onto a filesystem root or a bucket prefix: a key can never
/// escape the directory it is resolved in.
///
/// Blobs live at [`ObjectKey::for_blob`]: `blobs/<algorithm>/<first two hex chars>/<hex>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

/// Why a string is not a valid [`ObjectKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is the empty string.
    #[error("object key is empty")]
    Empty,
    /// The key is longer than 1024 bytes.
    #[error("object key is {0} bytes long, the limit is 1024")]
    TooLong(usize),
    /// The key starts or ends with `/`.
    #[error("object key must not start or end with '/'")]
    NotRelative,
    /// The key has an empty, `.` or `..` segment.
    #[error("object key has an empty, '.' or '..' segment")]
    BadSegment,
    /// The key contains a backslash or an ASCII control character.
    #[error("object key contains a forbidden character {0:?}")]
    ForbiddenChar(char),
}

impl ObjectKey {
    /// Validates `key`.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        validate(&key)?;
        Ok(Self(key))
    }

    /// The key under which the blob with `digest` is stored:
    /// `blobs/<algorithm>/<first two hex chars>/<full hex>`.
    pub fn for_blob(digest: &Digest) -> Self {
        let hex = digest.hex();
        Self(format!(
            "blobs/{}/{}/{}",
            digest.algorithm(),
            &hex[..2],
            hex
        ))
    }

    /// The digest of the blob stored at this key, if it is a blob key made by
    /// [`ObjectKey::for_blob`]; `None` for any other key.
    pub fn blob_digest(&self) -> Option<Digest> {
        let mut parts = self.0.split('/');
        let (Some("blobs"), Some(alg), Some(shard), Some(hex), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if shard.len() != 2 || !hex.starts_with(shard) {
            return None;
        }
        Digest::from_str(&format!("{alg}:{hex}")).ok()
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Unwraps the key into its string.
    pub fn into_string(self) -> String {
        self.0
    }
}

fn validate(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(key.len()));
    }
    if let Some(c) = key.chars().find(|&c| c == '\\' || c.is_ascii_control()) {
        return Err(KeyError::ForbiddenChar(c));
    }
    if key.starts_with('/') || key.ends_with('/') {
        return Err(KeyError::NotRelative);
    }
    if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(KeyError::BadSegment);
    }
    Ok(())
}

impl FromStr for ObjectKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = KeyError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectKey({:?})", self.0)
    }
}

impl serde::Serialize for ObjectKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ObjectKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::Algorithm;

    #[test]
    fn accepts_ordinary_keys() {
        for k in [
            "a",
            "blobs/sha256/ab/abc",
            "tags/library/ubuntu/latest",
            "a.b/c..d/.e",
        ] {
            let key = ObjectKey::new(k).unwrap();
            assert_eq!(key.as_str(), k);
            assert_eq!(key.to_string(), k);
            assert_eq!(k.parse::<ObjectKey>().unwrap(), key);
        }
    }

    #[test]
    fn rejects_traversal_and_absolute_paths() {
        let cases = [
            ("", KeyError::Empty),
            ("/etc/passwd", KeyError::NotRelative),
            ("a/", KeyError::NotRelative),
            ("..", KeyError::BadSegment),
            ("../x", KeyError::BadSegment),
            ("a/../../x", KeyError::BadSegment),
            ("a/./b", KeyError::BadSegment),
            (".", KeyError::BadSegment),
            ("a//b", KeyError::BadSegment),
            ("a\\..\\b", KeyError::ForbiddenChar('\\')),
            ("a\0b", KeyError::ForbiddenChar('\0')),
            ("a\nb", KeyError::ForbiddenChar('\n')),
            ("a\x7fb", KeyError::ForbiddenChar('\x7f')),
        ];
        for (k, want) in cases {
            assert_eq!(ObjectKey::new(k), Err(want), "key {k:?}");
        }
    }

    #[test]
    fn length_limit() {
        assert!(ObjectKey::new("a".repeat(1024)).is_ok());
        assert_eq!(
            ObjectKey::new("a".repeat(1025)),
            Err(KeyError::TooLong(1025))
        );
    }

    #[test]
    fn blob_keys_round_trip() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let digest = Digest::compute(alg, b"hello");
            let key = ObjectKey::for_blob(&digest);
            let hex = digest.hex();
            assert_eq!(
                key.as_str(),
                format!("blobs/{}/{}/{}", alg.name(), &hex[..2], hex)
            );
            assert!(ObjectKey::new(key.as_str()).is_ok());
            assert_eq!(key.blob_digest(), Some(digest));
        }
    }

    #[test]
    fn non_blob_keys_have_no_digest() {
        let digest = Digest::compute(Algorithm::Sha256, b"x");
        let hex = digest.hex();
        for k in [
            "tags/foo".to_string(),
            format!("blobs/sha256/{hex}"),
            format!("blobs/sha256/zz/{hex}"),
            format!("blobs/sha256/{}/{hex}/extra", &hex[..2]),
            format!("blobs/md5/{}/{hex}", &hex[..2]),
            format!("other/sha256/{}/{hex}", &hex[..2]),
            "blobs/sha256/ab/abcd".to_string(),
        ] {
            assert_eq!(ObjectKey::new(&k).unwrap().blob_digest(), None, "{k}");
        }
    }

    #[test]
    fn serde_is_a_string() {
        let key = ObjectKey::new("blobs/x").unwrap();
        assert_eq!(serde_json::to_string(&key).unwrap(), "\"blobs/x\"");
        assert_eq!(
            serde_json::from_str::<ObjectKey>("\"blobs/x\"").unwrap(),
            key
        );
        assert!(serde_json::from_str::<ObjectKey>("\"../x\"").is_err());
    }
}

//! Repository names and tags, validated per the OCI distribution spec.

use std::fmt;
use std::str::FromStr;

/// The longest repository name accepted; Docker and the reference registry cap names near here.
const MAX_NAME_LEN: usize = 255;
/// The longest tag the spec allows.
const MAX_TAG_LEN: usize = 128;

/// Why a repository name or tag is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The repository name is empty or longer than 255 characters.
    #[error("repository name must be 1 to {MAX_NAME_LEN} characters, got {0}")]
    NameLength(usize),
    /// The repository name does not follow the spec grammar.
    #[error(
        "repository name {0:?} is invalid: path components of lowercase letters and digits, \
         separated by '.', '_', '__' or dashes, joined by '/'"
    )]
    NameGrammar(String),
    /// The tag is empty or longer than 128 characters.
    #[error("tag must be 1 to {MAX_TAG_LEN} characters, got {0}")]
    TagLength(usize),
    /// The tag does not follow `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error("tag {0:?} is invalid: [a-zA-Z0-9_] then up to 127 of [a-zA-Z0-9._-]")]
    TagGrammar(String),
}

/// A repository name such as `library/ubuntu`, valid per the OCI distribution spec:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
///
/// Valid names never contain `..`, empty components or a leading `/`, so they are safe to use
/// as path prefixes. Storage backends use the repository name as their *namespace*.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_NAME_LEN {
            return Err(NameError::NameLength(s.len()));
        }
        if !s.split('/').all(is_valid_path_component) {
            return Err(NameError::NameGrammar(truncate(s)));
        }
        Ok(Self(s.to_owned()))
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-", then an alphanumeric.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        debug_assert!(i > start);
        if i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// A tag such as `latest` or `v1.2.3`, valid per `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_TAG_LEN {
            return Err(NameError::TagLength(s.len()));
        }
        let b = s.as_bytes();
        let first_ok = b[0].is_ascii_alphanumeric() || b[0] == b'_';
        let rest_ok = b[1..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'_' | b'-'));
        if !(first_ok && rest_ok) {
            return Err(NameError::TagGrammar(truncate(s)));
        }
        Ok(Self(s.to_owned()))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

macro_rules! string_newtype_impls {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($t), self.0)
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype_impls!(RepoName);
string_newtype_impls!(Tag);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_repository_names() {
        for name in [
            "a",
            "ubuntu",
            "library/ubuntu",
            "my-org/my.app/sub_dir/x__y",
            "a--b",
            "a---b/c.d",
            "0/1/2",
            &"a".repeat(255),
        ] {
            assert!(name.parse::<RepoName>().is_ok(), "{name}");
        }
    }

    #[test]
    fn invalid_repository_names() {
        for name in [
            "",
            "/a",
            "a/",
            "a//b",
            "A",
            "Library/ubuntu",
            "a..b",
            "a___b",
            "a._b",
            "-a",
            "a-",
            "a_",
            ".a",
            "../etc",
            "a/../b",
            "a b",
            "a:b",
            "a\u{e9}",
            &"a".repeat(256),
        ] {
            assert!(name.parse::<RepoName>().is_err(), "{name:?}");
        }
        assert_eq!(
            "".parse::<RepoName>().unwrap_err(),
            NameError::NameLength(0)
        );
    }

    #[test]
    fn valid_and_invalid_tags() {
        for tag in ["latest", "v1.2.3", "_x", "A-b_c.d", "1", &"a".repeat(128)] {
            assert!(tag.parse::<Tag>().is_ok(), "{tag}");
        }
        for tag in ["", ".a", "-a", "a/b", "a:b", "a b", "é", &"a".repeat(129)] {
            assert!(tag.parse::<Tag>().is_err(), "{tag:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,300}") {
            let _ = s.parse::<RepoName>();
            let _ = s.parse::<Tag>();
        }

        #[test]
        fn generated_valid_names_parse(s in "[a-z0-9]{1,5}((\\.|_|__|-{1,3})[a-z0-9]{1,5}){0,3}(/[a-z0-9]{1,5}((\\.|_|__|-+)[a-z0-9]{1,5}){0,2}){0,3}") {
            proptest::prop_assert!(s.parse::<RepoName>().is_ok(), "{}", s);
        }
    }
}

//! OCI content digests.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A registered OCI digest algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the canonical algorithm for OCI content (64 lowercase hex characters).
    Sha256,
    /// SHA-512 (128 lowercase hex characters).
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears before the `:` of a digest.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Length of the raw hash in bytes.
    pub const fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a string is not an acceptable digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// There is no `:` separating algorithm and encoded hash.
    #[error("digest has no algorithm separator ':'")]
    MissingSeparator,
    /// The algorithm part does not follow the OCI grammar `[a-z0-9]+([+._-][a-z0-9]+)*`.
    #[error("digest algorithm {0:?} is malformed")]
    MalformedAlgorithm(String),
    /// A well-formed algorithm that is not registered (only `sha256` and `sha512` are).
    #[error("digest algorithm {0:?} is not supported (only sha256 and sha512 are)")]
    UnsupportedAlgorithm(String),
    /// The encoded part is not lowercase hex.
    #[error("{algorithm} digest must be lowercase hex")]
    NotLowercaseHex {
        /// The algorithm whose encoding was wrong.
        algorithm: Algorithm,
    },
    /// The encoded part has the wrong number of characters for its algorithm.
    #[error("{algorithm} digest must have {expected} hex characters, got {actual}")]
    WrongLength {
        /// The algorithm whose encoding was wrong.
        algorithm: Algorithm,
        /// The required number of hex characters.
        expected: usize,
        /// The number that was given.
        actual: usize,
    },
}

/// An OCI content digest such as `sha256:e3b0c442…`.
///
/// Only the registered algorithms are accepted and the encoded part must be lowercase hex of the
/// exact length, so two equal digests always print the same. The value is `Copy` and hashes
/// cheaply, so it is the key type of every blob map.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    /// The raw hash; for SHA-256 only the first 32 bytes are used and the rest are zero.
    bytes: [u8; 64],
}

impl Digest {
    /// Builds a digest from raw hash bytes. Returns `None` if `raw` is not `algorithm.output_len()` long.
    pub fn from_raw(algorithm: Algorithm, raw: &[u8]) -> Option<Self> {
        if raw.len() != algorithm.output_len() {
            return None;
        }
        let mut bytes = [0u8; 64];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(Self { algorithm, bytes })
    }

    /// The SHA-256 digest with the given raw hash.
    pub fn sha256(raw: [u8; 32]) -> Self {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&raw);
        Self {
            algorithm: Algorithm::Sha256,
            bytes,
        }
    }

    /// Hashes `data` with `algorithm`.
    pub fn compute(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut hasher = DigestHasher::new(algorithm);
        hasher.update(data);
        hasher.finalize()
    }

    /// The algorithm this digest was computed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The raw hash bytes.
    pub fn raw(&self) -> &[u8] {
        &self.bytes[..self.algorithm.output_len()]
    }

    /// The encoded (lowercase hex) part, without the algorithm prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.raw())
    }

    /// A hasher that verifies content against this digest with the digest's own algorithm.
    pub fn hasher(&self) -> DigestHasher {
        DigestHasher::new(self.algorithm)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, encoded) = s.split_once(':').ok_or(DigestError::MissingSeparator)?;
        if !is_valid_algorithm_grammar(alg) {
            return Err(DigestError::MalformedAlgorithm(truncate(alg)));
        }
        let algorithm = Algorithm::from_name(alg)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm(truncate(alg)))?;
        let expected = algorithm.output_len() * 2;
        if encoded.len() != expected {
            return Err(DigestError::WrongLength {
                algorithm,
                expected,
                actual: encoded.len(),
            });
        }
        if !encoded
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::NotLowercaseHex { algorithm });
        }
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(encoded, &mut bytes[..algorithm.output_len()])
            .map_err(|_| DigestError::NotLowercaseHex { algorithm })?;
        Ok(Self { algorithm, bytes })
    }
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*` from the OCI image spec.
fn is_valid_algorithm_grammar(alg: &str) -> bool {
    !alg.is_empty()
        && alg.split(['+', '.', '_', '-']).all(|component| {
            !component.is_empty()
                && component
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Keeps error messages bounded when the input is hostile.
fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental hashing with a digest's algorithm.
#[derive(Clone)]
pub enum DigestHasher {
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl DigestHasher {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }

    /// Feeds more content.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finalize(self) -> Digest {
        match self {
            Self::Sha256(h) => Digest::from_raw(Algorithm::Sha256, &h.finalize()),
            Self::Sha512(h) => Digest::from_raw(Algorithm::Sha512, &h.finalize()),
        }
        .expect("hash output length matches its algorithm")
    }
}

impl fmt::Debug for DigestHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sha256(_) => f.write_str("DigestHasher(sha256)"),
            Self::Sha512(_) => f.write_str("DigestHasher(sha512)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_sha256() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY_SHA256);
        assert_eq!(d, Digest::compute(Algorithm::Sha256, b""));
    }

    #[test]
    fn parses_sha512_and_verifies_with_its_own_algorithm() {
        let d = Digest::compute(Algorithm::Sha512, b"abc");
        let s = d.to_string();
        assert!(s.starts_with("sha512:"));
        assert_eq!(s.len(), 7 + 128);
        let parsed: Digest = s.parse().unwrap();
        assert_eq!(parsed, d);
        let mut h = parsed.hasher();
        h.update(b"abc");
        assert_eq!(h.finalize(), d);
        assert_ne!(Digest::compute(Algorithm::Sha256, b"abc").raw(), d.raw());
    }

    #[test]
    fn rejects_bad_digests_with_typed_errors() {
        let hex64 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        type Check = fn(&DigestError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            (hex64.to_string(), |e| {
                matches!(e, DigestError::MissingSeparator)
            }),
            (format!(":{hex64}"), |e| {
                matches!(e, DigestError::MalformedAlgorithm(_))
            }),
            (format!("SHA256:{hex64}"), |e| {
                matches!(e, DigestError::MalformedAlgorithm(_))
            }),
            (format!("sha256+:{hex64}"), |e| {
                matches!(e, DigestError::MalformedAlgorithm(_))
            }),
            (format!("md5:{hex64}"), |e| {
                matches!(e, DigestError::UnsupportedAlgorithm(_))
            }),
            (format!("sha256+b64u:{hex64}"), |e| {
                matches!(e, DigestError::UnsupportedAlgorithm(_))
            }),
            (format!("sha256:{}", hex64.to_uppercase()), |e| {
                matches!(e, DigestError::NotLowercaseHex { .. })
            }),
            (format!("sha256:{}", &hex64[..63]), |e| {
                matches!(e, DigestError::WrongLength { actual: 63, .. })
            }),
            (format!("sha256:{hex64}0"), |e| {
                matches!(e, DigestError::WrongLength { .. })
            }),
            (format!("sha512:{hex64}"), |e| {
                matches!(e, DigestError::WrongLength { expected: 128, .. })
            }),
            (format!("sha256:{}g", &hex64[..63]), |e| {
                matches!(e, DigestError::NotLowercaseHex { .. })
            }),
            ("sha256:".to_string(), |e| {
                matches!(e, DigestError::WrongLength { actual: 0, .. })
            }),
            (format!("sha256:../{}", &hex64[..61]), |e| {
                matches!(e, DigestError::NotLowercaseHex { .. })
            }),
        ];
        for (input, check) in cases {
            let err = input.parse::<Digest>().unwrap_err();
            assert!(check(&err), "{input:?} gave {err:?}");
        }
    }

    #[test]
    fn serde_round_trips_as_string() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY_SHA256}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = s.parse::<Digest>();
        }

        #[test]
        fn display_parse_round_trip(data in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            for alg in [Algorithm::Sha256, Algorithm::Sha512] {
                let d = Digest::compute(alg, &data);
                proptest::prop_assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
            }
        }
    }
}

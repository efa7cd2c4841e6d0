//! Sizes and rates as people write them in scenario files: `"1.5GB"`, `"4MiB"`, `"300MB/s"`,
//! `"10Gbit/s"`. Decimal prefixes are powers of 1000, binary ones (`KiB`, `MiB`, …) of 1024.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// A malformed size or rate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct UnitError {
    what: &'static str,
    input: String,
    reason: &'static str,
}

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

/// A rate in bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Rate(pub f64);

/// Splits `"1.5 GB"` into `(1.5, "GB")`.
fn split(input: &str) -> Option<(f64, &str)> {
    let s = input.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let number: f64 = s[..end].replace('_', "").parse().ok()?;
    Some((number, s[end..].trim()))
}

fn multiplier(unit: &str) -> Option<f64> {
    Some(match unit {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    })
}

impl FromStr for Bytes {
    type Err = UnitError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| UnitError {
            what: "size",
            input: input.to_owned(),
            reason,
        };
        let (n, unit) = split(input).ok_or_else(|| err("expected a number and a unit"))?;
        let m = multiplier(unit)
            .ok_or_else(|| err("unknown unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"))?;
        let v = (n * m).round();
        if !v.is_finite() || v < 0.0 || v > 2f64.powi(60) {
            return Err(err("out of range"));
        }
        Ok(Self(v as u64))
    }
}

impl FromStr for Rate {
    type Err = UnitError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| UnitError {
            what: "rate",
            input: input.to_owned(),
            reason,
        };
        let (n, unit) = split(input).ok_or_else(|| err("expected a number and a unit"))?;
        // `Mbps` is `Mbit/s`.
        let bps = unit.strip_suffix("bps").map(|p| format!("{p}bit"));
        let unit = match &bps {
            Some(u) => u.as_str(),
            None => unit
                .strip_suffix("/s")
                .ok_or_else(|| err("a rate ends in /s (e.g. 300MB/s, 10Gbit/s)"))?,
        };
        let bits = |prefix: &str| -> Option<f64> {
            Some(
                match prefix {
                    "" => 1.0,
                    "k" | "K" => 1e3,
                    "M" => 1e6,
                    "G" => 1e9,
                    "T" => 1e12,
                    _ => return None,
                } / 8.0,
            )
        };
        let m = match unit.strip_suffix("bit") {
            Some(prefix) => bits(prefix),
            None => multiplier(unit),
        }
        .ok_or_else(|| err("unknown unit (e.g. MB/s, MiB/s, Gbit/s)"))?;
        let v = n * m;
        if !v.is_finite() || v <= 0.0 {
            return Err(err("must be positive"));
        }
        Ok(Self(v))
    }
}

/// A size or rate given as a bare number (bytes, bytes per second) or as a string with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Int(u64),
    Float(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Self(n)),
            Raw::Float(f) => Ok(Self(f.max(0.0) as u64)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let rate = match Raw::deserialize(d)? {
            Raw::Int(n) => Self(n as f64),
            Raw::Float(f) => Self(f),
            Raw::Text(s) => return s.parse().map_err(serde::de::Error::custom),
        };
        if rate.0 > 0.0 && rate.0.is_finite() {
            Ok(rate)
        } else {
            Err(serde::de::Error::custom("a rate must be positive"))
        }
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        if b >= 1e9 {
            write!(f, "{:.2} GB", b / 1e9)
        } else if b >= 1e6 {
            write!(f, "{:.1} MB", b / 1e6)
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} MB/s", self.0 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("4MiB".parse::<Bytes>().unwrap(), Bytes(4 << 20));
        assert_eq!("1.5GB".parse::<Bytes>().unwrap(), Bytes(1_500_000_000));
        assert_eq!("100 GB".parse::<Bytes>().unwrap(), Bytes(100_000_000_000));
        assert_eq!("512".parse::<Bytes>().unwrap(), Bytes(512));
        assert!("4 parsecs".parse::<Bytes>().is_err());
        assert!("MB".parse::<Bytes>().is_err());
    }

    #[test]
    fn rates() {
        assert_eq!("300MB/s".parse::<Rate>().unwrap(), Rate(300e6));
        assert_eq!("10Gbit/s".parse::<Rate>().unwrap(), Rate(1.25e9));
        assert_eq!(
            "8 MiB/s".parse::<Rate>().unwrap(),
            Rate(8.0 * 1024.0 * 1024.0)
        );
        assert_eq!("100Mbps".parse::<Rate>().unwrap(), Rate(12.5e6));
        assert!("300MB".parse::<Rate>().is_err(), "a rate needs /s");
        assert!("0MB/s".parse::<Rate>().is_err());
    }
}

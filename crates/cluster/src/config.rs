//! Configuration (`[cluster]` / `[origins]` sections of service TOML files), its validation and
//! the parsing of member addresses.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ClusterError, Node};

/// Membership and health of one ring (e.g. the origins or the trackers).
///
/// ```toml
/// [origins]
/// members = ["origin-0.origin:7100", "10.0.0.7:7100", "[fd00::7]:7100"]
/// replicas = 3
/// dns = { name = "origin.shoal.svc.cluster.local", port = 7100, refresh = "10s" }
/// health = { interval = "2s", timeout = "1s", fall = 3, rise = 2 }
/// ```
///
/// Members are the static list plus, with `dns`, every address the name resolves to. Every
/// field has a default, but a cluster needs at least one of `members` and `dns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Static members, `host:port` each (`10.0.0.7:7100`, `[fd00::7]:7100`,
    /// `origin-0.origin:7100`). A hostname is **not** resolved into addresses: it is the
    /// member's id and the host of its URL as given (lowercased), so every process must spell
    /// it the same way. IP literals are written in canonical form (`[0::1]` → `[::1]`).
    /// Default: none.
    pub members: Vec<String>,
    /// Members from DNS, added to the static ones. Default: none.
    pub dns: Option<DnsConfig>,
    /// Copies of each key (the R owners). Default 3.
    pub replicas: usize,
    /// Active and passive health checking.
    pub health: HealthConfig,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            members: Vec::new(),
            dns: None,
            replicas: shoal_hashring::DEFAULT_REPLICAS,
            health: HealthConfig::default(),
        }
    }
}

/// `http://host:port/` → `host:port`; anything else unchanged.
fn member_of(raw: &str) -> String {
    raw.strip_prefix("http://")
        .unwrap_or(raw)
        .trim_end_matches('/')
        .to_owned()
}

/// Membership from a DNS name (e.g. a Kubernetes headless service): every A and AAAA record
/// becomes a member `ip:port`, re-resolved every `refresh`.
///
/// A failed resolution, and an answer **without** addresses, keep the previous membership (a
/// transient NXDOMAIN must not empty the ring); members leave only when a later non-empty
/// answer no longer lists them. Until the first non-empty answer, DNS contributes no members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// The name to resolve through the system resolver, e.g.
    /// `origin.shoal.svc.cluster.local`. Required.
    pub name: String,
    /// The port every resolved address serves on. Required.
    pub port: u16,
    /// How often the name is resolved again. Default `10s`.
    #[serde(default = "default_dns_refresh", with = "humantime_serde")]
    pub refresh: Duration,
}

fn default_dns_refresh() -> Duration {
    Duration::from_secs(10)
}

impl DnsConfig {
    /// `name:port`, refreshed every 10 s.
    pub fn new(name: impl Into<String>, port: u16) -> Self {
        Self {
            name: name.into(),
            port,
            refresh: default_dns_refresh(),
        }
    }
}

/// Health checking. Members start healthy (when they first appear, and again when they leave
/// and come back); checks and failures demote them. Unhealthy members are skipped by placement
/// ([`Cluster::healthy_owners`](crate::Cluster::healthy_owners)) and tried last by
/// [`Cluster::route`](crate::Cluster::route), but stay in the ring: they keep owning their keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Whether health is tracked at all. When `false` there are no active checks and passive
    /// reports are ignored too (nothing could bring a member back): every member is healthy.
    /// Default `true`.
    pub enabled: bool,
    /// How often every member is checked (concurrently). Default `2s`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Timeout of one check, connecting included. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failed checks that make a healthy member unhealthy (k). Default 3.
    pub fall: u32,
    /// Consecutive passed checks that make an unhealthy member healthy again (m). Default 2.
    pub rise: u32,
    /// The path checked with `GET`; a 2xx answer passes, anything else (other statuses,
    /// redirects, errors, timeouts) fails. Default `/health`.
    pub path: String,
    /// Failures reported by clients ([`Cluster::report_failure`](crate::Cluster::report_failure))
    /// within `passive_window`, with no success reported in between, that make a member
    /// unhealthy until `rise` active checks pass. Default 3.
    pub passive_failures: u32,
    /// See `passive_failures`. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub passive_window: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            fall: 3,
            rise: 2,
            path: "/health".to_owned(),
            passive_failures: 3,
            passive_window: Duration::from_secs(10),
        }
    }
}

impl ClusterConfig {
    /// Default settings with these static members; `http://` prefixes and trailing slashes
    /// are dropped, so base URLs work too (`http://10.0.0.1:7100/` → `10.0.0.1:7100`).
    pub fn with_members<I, S>(members: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            members: members.into_iter().map(|m| member_of(m.as_ref())).collect(),
            ..Self::default()
        }
    }

    /// Whether any member source is configured.
    pub fn is_configured(&self) -> bool {
        !self.members.is_empty() || self.dns.is_some()
    }

    /// For service configs that accept one member (or base URL), a list of them, or a full
    /// table: `#[serde(deserialize_with = "ClusterConfig::list_or_table")]`.
    pub fn list_or_table<'de, D>(deserializer: D) -> Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            One(String),
            List(Vec<String>),
            Table(ClusterConfig),
        }
        Ok(match Either::deserialize(deserializer)? {
            Either::One(one) => Self::with_members([one]),
            Either::List(list) => Self::with_members(list),
            Either::Table(t) => t,
        })
    }

    /// Checks the configuration without starting anything: member syntax, a non-empty source
    /// of members, positive counts and durations. [`Cluster::start`](crate::Cluster::start)
    /// does this too; services can call it when they load their config.
    pub fn validate(&self) -> Result<(), ClusterError> {
        self.static_nodes()?;
        if self.members.is_empty() && self.dns.is_none() {
            return Err(ClusterError::NoMembers);
        }
        if self.replicas == 0 {
            return Err(invalid("replicas must be at least 1"));
        }
        if let Some(dns) = &self.dns {
            if dns.name.trim().is_empty() {
                return Err(invalid("dns.name is empty"));
            }
            if dns.port == 0 {
                return Err(invalid("dns.port must not be 0"));
            }
            if dns.refresh.is_zero() {
                return Err(invalid("dns.refresh must be positive"));
            }
        }
        let h = &self.health;
        if h.interval.is_zero() || h.timeout.is_zero() || h.passive_window.is_zero() {
            return Err(invalid(
                "health.interval, health.timeout and health.passive_window must be positive",
            ));
        }
        if h.fall == 0 || h.rise == 0 || h.passive_failures == 0 {
            return Err(invalid(
                "health.fall, health.rise and health.passive_failures must be at least 1",
            ));
        }
        if !h.path.starts_with('/') {
            return Err(invalid("health.path must start with '/'"));
        }
        Ok(())
    }

    /// The static members as nodes, deduplicated by id, in config order.
    pub(crate) fn static_nodes(&self) -> Result<Vec<Node>, ClusterError> {
        parse_members(&self.members)
    }
}

/// Parses and deduplicates members (first occurrence wins).
pub(crate) fn parse_members(members: &[String]) -> Result<Vec<Node>, ClusterError> {
    let mut nodes: Vec<Node> = Vec::with_capacity(members.len());
    for m in members {
        let node = parse_member(m)?;
        if !nodes.iter().any(|n| n.id == node.id) {
            nodes.push(node);
        }
    }
    Ok(nodes)
}

fn invalid(reason: &str) -> ClusterError {
    ClusterError::InvalidConfig(reason.to_owned())
}

fn bad_member(member: &str, reason: &str) -> ClusterError {
    ClusterError::InvalidMember {
        member: member.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Parses a static member, `host:port`: an IPv4 or bracketed IPv6 socket address (written
/// canonically) or a hostname (lowercased, not resolved).
pub(crate) fn parse_member(raw: &str) -> Result<Node, ClusterError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(bad_member(raw, "empty"));
    }
    if s.contains("://") {
        return Err(bad_member(raw, "expected host:port, not a URL"));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(bad_member(raw, "port 0"));
        }
        return Ok(Node::from_addr(addr));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(bad_member(raw, "missing :port"));
    };
    let port: u16 = match port.parse() {
        Ok(p) if p != 0 => p,
        _ => return Err(bad_member(raw, "port must be 1-65535")),
    };
    if host.starts_with('[') || host.contains(':') {
        return Err(bad_member(
            raw,
            "invalid IPv6 address (write it in brackets: [::1]:7100)",
        ));
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if host.is_empty() || !host.chars().all(valid) {
        return Err(bad_member(raw, "invalid hostname"));
    }
    let id = format!("{}:{port}", host.to_ascii_lowercase());
    Ok(Node::from_id(id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(s: &str) -> String {
        parse_member(s).unwrap().id
    }

    #[test]
    fn members_parse_and_normalise() {
        assert_eq!(id("10.0.0.7:7100"), "10.0.0.7:7100");
        assert_eq!(id(" [0:0::1]:7100 "), "[::1]:7100");
        assert_eq!(id("Origin-0.Origin:7100"), "origin-0.origin:7100");
        assert_eq!(id("localhost:80"), "localhost:80");
        let v6 = parse_member("[fd00::7]:7100").unwrap();
        assert_eq!(v6.base_url, "http://[fd00::7]:7100");
        let host = parse_member("origin_1.svc:7100").unwrap();
        assert_eq!(host.base_url, "http://origin_1.svc:7100");
        for bad in [
            "",
            "host",
            "host:",
            "host:0",
            "host:70000",
            ":7100",
            "::1:7100",
            "[::1]",
            "[::1:7100",
            "http://host:7100",
            "a b:1",
            "user@host:1",
        ] {
            assert!(
                matches!(parse_member(bad), Err(ClusterError::InvalidMember { .. })),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn duplicates_are_dropped() {
        let nodes = parse_members(&["a:1".into(), "A:1".into(), "b:1".into()]).unwrap();
        let ids: Vec<_> = nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["a:1", "b:1"]);
    }

    #[test]
    fn validation() {
        let ok = ClusterConfig {
            members: vec!["a:1".into()],
            ..ClusterConfig::default()
        };
        ok.validate().unwrap();
        assert!(matches!(
            ClusterConfig::default().validate(),
            Err(ClusterError::NoMembers)
        ));
        let dns_only = ClusterConfig {
            dns: Some(DnsConfig::new("origin.svc", 7100)),
            ..ClusterConfig::default()
        };
        dns_only.validate().unwrap();
        let broken: [fn(&mut ClusterConfig); 7] = [
            |c| c.replicas = 0,
            |c| c.health.fall = 0,
            |c| c.health.rise = 0,
            |c| c.health.interval = Duration::ZERO,
            |c| c.health.path = "health".into(),
            |c| c.dns = Some(DnsConfig::new("", 1)),
            |c| c.dns = Some(DnsConfig::new("x", 0)),
        ];
        for f in broken {
            let mut c = ok.clone();
            f(&mut c);
            assert!(
                matches!(c.validate(), Err(ClusterError::InvalidConfig(_))),
                "{c:?}"
            );
        }
    }

    #[test]
    fn toml_sections_with_defaults() {
        #[derive(Deserialize)]
        struct File {
            origins: ClusterConfig,
        }
        let f: File = toml::from_str(
            r#"
            [origins]
            members = ["[::1]:7100"]
            dns = { name = "origin.shoal.svc.cluster.local", port = 7100 }
            health = { interval = "500ms", fall = 5 }
            "#,
        )
        .unwrap();
        let c = f.origins;
        assert_eq!(c.replicas, 3);
        let dns = c.dns.unwrap();
        assert_eq!(dns.refresh, Duration::from_secs(10));
        assert_eq!(c.health.interval, Duration::from_millis(500));
        assert_eq!(c.health.fall, 5);
        assert_eq!(c.health.rise, 2);
        assert_eq!(c.health.timeout, Duration::from_secs(1));
        assert_eq!(c.health.path, "/health");
        assert_eq!(c.health.passive_window, Duration::from_secs(10));
        assert!(c.health.enabled);
        assert!(toml::from_str::<ClusterConfig>("member = []").is_err());
        assert!(toml::from_str::<ClusterConfig>("health = { intervall = \"1s\" }").is_err());
        assert!(toml::from_str::<ClusterConfig>("dns = { name = \"x\" }").is_err());
    }

    #[test]
    fn lists_of_members_or_urls_and_tables_both_parse() {
        #[derive(Deserialize)]
        struct Svc {
            #[serde(deserialize_with = "ClusterConfig::list_or_table")]
            origins: ClusterConfig,
        }
        let list: Svc =
            toml::from_str(r#"origins = ["http://10.0.0.1:7100/", "10.0.0.2:7100"]"#).unwrap();
        assert_eq!(list.origins.members, ["10.0.0.1:7100", "10.0.0.2:7100"]);
        assert_eq!(list.origins.replicas, 3);
        list.origins.validate().unwrap();
        let table: Svc = toml::from_str("[origins]\nmembers = [\"a:1\"]\nreplicas = 2\n").unwrap();
        assert_eq!(table.origins.replicas, 2);
        assert!(toml::from_str::<Svc>("[origins]\nbogus = 1\n").is_err());
        let one: Svc = toml::from_str(r#"origins = "http://[::1]:7100""#).unwrap();
        assert_eq!(one.origins.members, ["[::1]:7100"]);
        assert!(!ClusterConfig::default().is_configured());
        assert!(ClusterConfig::with_members(["a:1"]).is_configured());
    }
}

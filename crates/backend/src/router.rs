//! Backend configuration and routing namespaces to backends.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use regex::Regex;
use serde::{Deserialize, Serialize};
use shoal_core::RepoName;

use crate::Backend;
use crate::fs::FilesystemBackend;
use crate::object::{AzureConfig, GcsConfig, HttpConfig, ObjectStoreBackend, S3Config};
use crate::registry::{RegistryBackend, RegistryConfig};

/// One routing rule: namespaces matching `namespace` are served by `backend`.
///
/// ```toml
/// [[backends]]
/// namespace = "library/.*"
/// kind = "registry"
/// url = "https://registry-1.docker.io"
///
/// [[backends]]
/// namespace = ".*"
/// kind = "s3"
/// bucket = "shoal-blobs"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteConfig {
    /// Regular expression over the repository name, implicitly anchored (`^(?:…)$`), so
    /// `library/.*` matches `library/ubuntu` but not `x/library/ubuntu`. Default: `.*` (every
    /// namespace).
    #[serde(default = "match_all")]
    pub namespace: String,
    /// The backend serving matching namespaces; its fields sit beside `namespace`.
    #[serde(flatten)]
    pub backend: BackendConfig,
}

fn match_all() -> String {
    ".*".to_string()
}

/// A local directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Root directory; created on the first write if missing. Required.
    pub root: PathBuf,
}

/// Which backend to use and how to reach it, selected by `kind`.
///
/// Secrets left out of the configuration are taken from the usual environment variables of
/// each cloud (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackendConfig {
    /// `kind = "filesystem"`: files under a local directory.
    Filesystem(FilesystemConfig),
    /// `kind = "s3"`: Amazon S3 or an S3-compatible store.
    S3(S3Config),
    /// `kind = "gcs"`: Google Cloud Storage.
    Gcs(GcsConfig),
    /// `kind = "azure"`: Azure Blob Storage.
    Azure(AzureConfig),
    /// `kind = "http"`: a read-only HTTP server.
    Http(HttpConfig),
    /// `kind = "registry"`: a read-only upstream OCI registry (pull-through).
    Registry(RegistryConfig),
}

impl BackendConfig {
    /// The `kind` name of this configuration.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Filesystem(_) => "filesystem",
            Self::S3(_) => "s3",
            Self::Gcs(_) => "gcs",
            Self::Azure(_) => "azure",
            Self::Http(_) => "http",
            Self::Registry(_) => "registry",
        }
    }
}

/// Debug output names the kind and location but never credentials.
impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("BackendConfig");
        s.field("kind", &self.kind());
        match self {
            Self::Filesystem(c) => s.field("root", &c.root),
            Self::S3(c) => s
                .field("bucket", &c.bucket)
                .field("endpoint", &c.endpoint)
                .field("prefix", &c.prefix),
            Self::Gcs(c) => s.field("bucket", &c.bucket).field("prefix", &c.prefix),
            Self::Azure(c) => s
                .field("account", &c.account)
                .field("container", &c.container)
                .field("prefix", &c.prefix),
            Self::Http(c) => s.field("url", &c.url).field("prefix", &c.prefix),
            Self::Registry(c) => s
                .field("url", &c.url)
                .field("repository_prefix", &c.repository_prefix),
        };
        s.finish_non_exhaustive()
    }
}

/// Why a backend or router could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A route's namespace pattern is not a valid regular expression.
    #[error("route {index}: invalid namespace pattern {pattern:?}: {source}")]
    Pattern {
        /// Position of the route in the configuration, from 0.
        index: usize,
        /// The offending pattern.
        pattern: String,
        /// What is wrong with it.
        #[source]
        source: regex::Error,
    },
    /// A backend's configuration was rejected.
    #[error("{}cannot build {kind} backend: {source}", route_prefix(*.index))]
    Backend {
        /// Position of the route in the configuration, if built as part of a router.
        index: Option<usize>,
        /// The backend's `kind`.
        kind: &'static str,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn route_prefix(index: Option<usize>) -> String {
    index.map(|i| format!("route {i}: ")).unwrap_or_default()
}

/// Builds the backend described by `config`. No network request is made.
pub fn open(config: &BackendConfig) -> Result<Arc<dyn Backend>, RouterError> {
    let kind = config.kind();
    let err = |source: Box<dyn std::error::Error + Send + Sync>| RouterError::Backend {
        index: None,
        kind,
        source,
    };
    Ok(match config {
        BackendConfig::Filesystem(c) => Arc::new(FilesystemBackend::new(c.root.clone())),
        BackendConfig::S3(c) => Arc::new(ObjectStoreBackend::s3(c).map_err(|e| err(e.into()))?),
        BackendConfig::Gcs(c) => Arc::new(ObjectStoreBackend::gcs(c).map_err(|e| err(e.into()))?),
        BackendConfig::Azure(c) => {
            Arc::new(ObjectStoreBackend::azure(c).map_err(|e| err(e.into()))?)
        }
        BackendConfig::Http(c) => Arc::new(ObjectStoreBackend::http(c).map_err(|e| err(e.into()))?),
        BackendConfig::Registry(c) => Arc::new(RegistryBackend::new(c).map_err(|e| err(e.into()))?),
    })
}

/// Maps namespaces to backends: the first route whose pattern matches wins.
#[derive(Clone, Debug, Default)]
pub struct BackendRouter {
    routes: Vec<(Regex, Arc<dyn Backend>)>,
}

impl BackendRouter {
    /// A router over already-built routes, tried in order. The regexes are used as given:
    /// anchor them yourself (see [`BackendRouter::anchored`]).
    pub fn new(routes: Vec<(Regex, Arc<dyn Backend>)>) -> Self {
        Self { routes }
    }

    /// A router sending every namespace to `backend`.
    pub fn single(backend: Arc<dyn Backend>) -> Self {
        Self::new(vec![(
            Self::anchored(".*").unwrap_or_else(|_| unreachable!()),
            backend,
        )])
    }

    /// Compiles `pattern` anchored at both ends, as configured patterns are: `^(?:pattern)$`.
    pub fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
        Regex::new(&format!("^(?:{pattern})$"))
    }

    /// Builds every route's backend, in order. Errors name the route's index.
    pub fn from_config(routes: &[RouteConfig]) -> Result<Self, RouterError> {
        let mut built = Vec::with_capacity(routes.len());
        for (index, route) in routes.iter().enumerate() {
            let regex =
                Self::anchored(&route.namespace).map_err(|source| RouterError::Pattern {
                    index,
                    pattern: route.namespace.clone(),
                    source,
                })?;
            let backend = open(&route.backend).map_err(|e| match e {
                RouterError::Backend { kind, source, .. } => RouterError::Backend {
                    index: Some(index),
                    kind,
                    source,
                },
                other => other,
            })?;
            built.push((regex, backend));
        }
        Ok(Self::new(built))
    }

    /// Appends a route, tried after the existing ones.
    pub fn push(&mut self, pattern: Regex, backend: Arc<dyn Backend>) {
        self.routes.push((pattern, backend));
    }

    /// The backend for `namespace`: the first matching route's, or `None`.
    pub fn route(&self, namespace: &RepoName) -> Option<Arc<dyn Backend>> {
        self.routes
            .iter()
            .find(|(pattern, _)| pattern.is_match(namespace.as_str()))
            .map(|(_, backend)| Arc::clone(backend))
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes (every namespace is unrouted).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct File {
        backends: Vec<RouteConfig>,
    }

    fn parse(text: &str) -> Result<Vec<RouteConfig>, toml::de::Error> {
        toml::from_str::<File>(text).map(|f| f.backends)
    }

    fn ns(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    fn fs_backend(root: &str) -> Arc<dyn Backend> {
        Arc::new(FilesystemBackend::new(PathBuf::from(root)))
    }

    #[test]
    fn first_match_wins_and_patterns_are_anchored() {
        let a = fs_backend("/a");
        let b = fs_backend("/b");
        let router = BackendRouter::new(vec![
            (BackendRouter::anchored("library/.*").unwrap(), a.clone()),
            (
                BackendRouter::anchored("library/ubuntu|other").unwrap(),
                b.clone(),
            ),
        ]);
        let hit = |n: &str| router.route(&ns(n));
        assert!(Arc::ptr_eq(&hit("library/ubuntu").unwrap(), &a));
        assert!(Arc::ptr_eq(&hit("other").unwrap(), &b));
        // Anchored: neither a suffix nor a prefix match counts.
        assert!(hit("x/library/ubuntu").is_none());
        assert!(hit("otherwise").is_none());
        assert!(hit("library").is_none());
    }

    #[test]
    fn single_matches_everything() {
        let a = fs_backend("/a");
        let router = BackendRouter::single(a.clone());
        for n in ["a", "library/ubuntu", "x/y/z"] {
            assert!(Arc::ptr_eq(&router.route(&ns(n)).unwrap(), &a));
        }
        assert!(BackendRouter::default().route(&ns("a")).is_none());
    }

    #[test]
    fn parses_every_kind() {
        let routes = parse(
            r#"
            [[backends]]
            namespace = "library/.*"
            kind = "registry"
            url = "https://registry-1.docker.io"
            repository_prefix = "library/"

            [[backends]]
            namespace = "team/.*"
            kind = "s3"
            bucket = "b"
            endpoint = "http://127.0.0.1:9000"
            path_style = true
            allow_http = true
            prefix = "shoal"

            [[backends]]
            kind = "gcs"
            bucket = "g"

            [[backends]]
            kind = "azure"
            container = "c"
            account = "acct"
            use_emulator = true

            [[backends]]
            kind = "http"
            url = "http://127.0.0.1:1/"

            [[backends]]
            kind = "filesystem"
            root = "/var/lib/shoal"
            "#,
        )
        .unwrap();
        let kinds: Vec<_> = routes.iter().map(|r| r.backend.kind()).collect();
        assert_eq!(
            kinds,
            ["registry", "s3", "gcs", "azure", "http", "filesystem"]
        );
        assert_eq!(routes[0].namespace, "library/.*");
        assert_eq!(routes[2].namespace, ".*");
        let BackendConfig::S3(s3) = &routes[1].backend else {
            panic!("not s3");
        };
        assert!(s3.path_style && s3.allow_http);
        assert_eq!(s3.prefix.as_deref(), Some("shoal"));
        assert_eq!(s3.timeout_secs, 30);
        assert_eq!(s3.max_retries, 2);
        let BackendConfig::Registry(reg) = &routes[0].backend else {
            panic!("not registry");
        };
        assert_eq!(reg.repository_prefix, "library/");
        assert_eq!(reg.timeout_secs, 30);
    }

    #[test]
    fn rejects_unknown_fields_and_kinds() {
        let unknown_field = parse(
            r#"
            [[backends]]
            kind = "s3"
            bucket = "b"
            buckett = "typo"
            "#,
        );
        assert!(unknown_field.is_err());
        let unknown_kind = parse(
            r#"
            [[backends]]
            kind = "ftp"
            "#,
        );
        assert!(unknown_kind.is_err());
        let missing_required = parse(
            r#"
            [[backends]]
            kind = "filesystem"
            "#,
        );
        assert!(missing_required.is_err());
    }

    #[test]
    fn from_config_builds_routes_in_order() {
        let routes = parse(
            r#"
            [[backends]]
            namespace = "cache/.*"
            kind = "filesystem"
            root = "/tmp/shoal-a"

            [[backends]]
            kind = "s3"
            bucket = "b"
            region = "us-east-1"
            endpoint = "http://127.0.0.1:1"
            path_style = true
            allow_http = true
            access_key_id = "k"
            secret_access_key = "s"
            "#,
        )
        .unwrap();
        let router = BackendRouter::from_config(&routes).unwrap();
        assert_eq!(router.len(), 2);
        let first = format!("{:?}", router.route(&ns("cache/x")).unwrap());
        assert!(first.contains("FilesystemBackend"), "{first}");
        let second = format!("{:?}", router.route(&ns("other/x")).unwrap());
        assert!(second.contains("ObjectStoreBackend"), "{second}");
    }

    #[test]
    fn errors_name_the_route() {
        let routes = parse(
            r#"
            [[backends]]
            kind = "filesystem"
            root = "/tmp/x"

            [[backends]]
            namespace = "("
            kind = "filesystem"
            root = "/tmp/x"
            "#,
        )
        .unwrap();
        let err = BackendRouter::from_config(&routes).unwrap_err();
        assert!(
            matches!(err, RouterError::Pattern { index: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().starts_with("route 1:"), "{err}");

        let routes = parse(
            r#"
            [[backends]]
            kind = "registry"
            url = "not a url"
            "#,
        )
        .unwrap();
        let err = BackendRouter::from_config(&routes).unwrap_err();
        assert!(
            matches!(
                err,
                RouterError::Backend {
                    index: Some(0),
                    kind: "registry",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn builds_cloud_backends_without_network() {
        let routes = parse(
            r#"
            [[backends]]
            kind = "azure"
            container = "c"
            use_emulator = true

            [[backends]]
            kind = "http"
            url = "http://127.0.0.1:1/blobs"
            "#,
        )
        .unwrap();
        for route in &routes {
            open(&route.backend).unwrap();
        }
        let bad = parse(
            r#"
            [[backends]]
            kind = "http"
            url = "::not a url::"
            "#,
        )
        .unwrap();
        assert!(matches!(
            open(&bad[0].backend),
            Err(RouterError::Backend {
                index: None,
                kind: "http",
                ..
            })
        ));
    }

    #[test]
    fn debug_hides_credentials() {
        let routes = parse(
            r#"
            [[backends]]
            kind = "s3"
            bucket = "b"
            secret_access_key = "hunter2"
            session_token = "hunter3"

            [[backends]]
            kind = "registry"
            url = "https://r"
            username = "u"
            password = "hunter4"

            [[backends]]
            kind = "azure"
            container = "c"
            access_key = "hunter5"
            "#,
        )
        .unwrap();
        let text = format!("{routes:?}");
        assert!(!text.contains("hunter"), "{text}");
        for route in &routes {
            let text = match &route.backend {
                BackendConfig::S3(c) => format!("{c:?}"),
                BackendConfig::Registry(c) => format!("{c:?}"),
                BackendConfig::Azure(c) => format!("{c:?}"),
                _ => String::new(),
            };
            assert!(!text.contains("hunter"), "{text}");
        }
    }
}

//! The background tasks: the active health checker and the DNS refresher. Both hold a weak
//! reference to the cluster and end when it is dropped or at shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Weak;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cluster::Inner;
use crate::{DnsConfig, HealthConfig, Node};

/// Checks every member every `interval`, all concurrently, each bounded by the client's
/// timeout; a round that outlasts the interval delays the next one.
pub(crate) async fn run_checker(
    cluster: Weak<Inner>,
    client: reqwest::Client,
    config: HealthConfig,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(members) = cluster.upgrade().map(|c| c.members()) else {
            return;
        };
        let mut checks = JoinSet::new();
        for node in members {
            let client = client.clone();
            let url = format!("{}{}", node.base_url, config.path);
            checks.spawn(async move { (node.id, check(&client, &url).await) });
        }
        let mut results = Vec::with_capacity(checks.len());
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                next = checks.join_next() => match next {
                    Some(Ok(result)) => results.push(result),
                    Some(Err(e)) => debug!(error = %e, "health check task failed"),
                    None => break,
                }
            }
        }
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        cluster.apply_checks(&results);
    }
}

/// One check: a 2xx answer passes.
async fn check(client: &reqwest::Client, url: &str) -> bool {
    match client.get(url).send().await {
        Ok(response) if response.status().is_success() => true,
        Ok(response) => {
            debug!(%url, status = %response.status(), "health check failed");
            false
        }
        Err(e) => {
            debug!(%url, error = %e, "health check failed");
            false
        }
    }
}

/// Resolves the name now and then every `refresh`; each usable answer replaces the DNS members.
pub(crate) async fn run_dns(cluster: Weak<Inner>, dns: DnsConfig, shutdown: CancellationToken) {
    // Resolution goes through the blocking system resolver; a hung lookup counts as a failure.
    let timeout = dns.refresh.max(Duration::from_secs(5));
    let mut failing = false;
    loop {
        let answer = tokio::select! {
            () = shutdown.cancelled() => return,
            answer = resolve(&dns.name, dns.port, timeout) => answer,
        };
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        match members_from_answer(answer) {
            Ok(nodes) => {
                if failing {
                    info!(name = %dns.name, members = nodes.len(), "cluster DNS resolves again");
                    failing = false;
                }
                cluster.set_dns_members(nodes);
            }
            Err(e) if !failing => {
                warn!(name = %dns.name, error = %e, "cluster DNS resolution failed; keeping the previous members");
                failing = true;
            }
            Err(e) => debug!(name = %dns.name, error = %e, "cluster DNS resolution still failing"),
        }
        drop(cluster);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(dns.refresh) => {}
        }
    }
}

async fn resolve(name: &str, port: u16, timeout: Duration) -> io::Result<Vec<SocketAddr>> {
    match tokio::time::timeout(timeout, tokio::net::lookup_host((name, port))).await {
        Ok(addrs) => Ok(addrs?.collect()),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        )),
    }
}

/// The members an answer stands for: every address once, sorted. An error or an empty answer
/// is an error, and the caller keeps the previous members.
fn members_from_answer(answer: io::Result<Vec<SocketAddr>>) -> io::Result<Vec<Node>> {
    let mut addrs = answer?;
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the answer has no addresses",
        ));
    }
    Ok(addrs.into_iter().map(Node::from_addr).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_become_members_and_bad_answers_are_errors() {
        let a: SocketAddr = "10.0.0.2:7100".parse().unwrap();
        let b: SocketAddr = "[fd00::1]:7100".parse().unwrap();
        let nodes = members_from_answer(Ok(vec![b, a, a])).unwrap();
        let ids: Vec<_> = nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["10.0.0.2:7100", "[fd00::1]:7100"]);
        assert_eq!(nodes[1].base_url, "http://[fd00::1]:7100");
        assert!(members_from_answer(Ok(vec![])).is_err());
        assert!(members_from_answer(Err(io::Error::other("NXDOMAIN"))).is_err());
    }
}

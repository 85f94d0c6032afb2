//! Name resolution. The proxy resolves names itself (never the skill), once per connection, and
//! connects only to addresses it checked.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

/// The future a [`Resolve`] implementation returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'a>>;

/// Resolves a host name to addresses.
pub trait Resolve: Send + Sync {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a>;
}

/// The operating system's resolver (`getaddrinfo` through tokio).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            let mut out: Vec<IpAddr> = Vec::new();
            for sa in tokio::net::lookup_host((host, 0u16)).await? {
                if !out.contains(&sa.ip()) {
                    out.push(sa.ip());
                }
            }
            Ok(out)
        })
    }
}

/// Why a `--resolve name=ip[,ip]` override was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "resolve override {input:?}: {reason} (expected NAME=IP[,IP…], e.g. imap.gmail.com=127.0.0.2)"
)]
pub struct StaticResolverError {
    pub input: String,
    pub reason: String,
}

/// A fixed table of names (tests, and the `--resolve name=ip` override). A name not in the table
/// goes to the fallback resolver if there is one, and otherwise fails with `NotFound`.
#[derive(Clone, Default)]
pub struct StaticResolver {
    table: HashMap<String, Vec<IpAddr>>,
    fallback: Option<Arc<dyn Resolve>>,
}

impl std::fmt::Debug for StaticResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticResolver")
            .field("table", &self.table)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl StaticResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `name` to `addrs` (replacing an earlier entry).
    pub fn insert(&mut self, name: &str, addrs: Vec<IpAddr>) -> &mut Self {
        self.table.insert(normalise(name), addrs);
        self
    }

    /// Adds every entry of `other`.
    pub fn merge(&mut self, other: StaticResolver) -> &mut Self {
        self.table.extend(other.table);
        self
    }

    /// Names not in the table go to `fallback`.
    pub fn with_fallback(mut self, fallback: Arc<dyn Resolve>) -> Self {
        self.fallback = Some(fallback);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

impl FromStr for StaticResolver {
    type Err = StaticResolverError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| StaticResolverError {
            input: input.to_owned(),
            reason,
        };
        let (name, ips) = input
            .split_once('=')
            .ok_or_else(|| err("missing '='".into()))?;
        let name = normalise(name.trim());
        if name.is_empty() {
            return Err(err("empty name".into()));
        }
        // The name must be one a grant could name.
        ironclaw_crds::Host::parse(&name).map_err(|r| err(format!("name: {r}")))?;
        let mut addrs = Vec::new();
        for ip in ips.split(',') {
            let ip = ip.trim();
            let ip = ip
                .strip_prefix('[')
                .and_then(|i| i.strip_suffix(']'))
                .unwrap_or(ip);
            let addr: IpAddr = ip
                .parse()
                .map_err(|_| err(format!("{ip:?} is not an IP address")))?;
            addrs.push(addr);
        }
        let mut r = StaticResolver::new();
        r.insert(&name, addrs);
        Ok(r)
    }
}

impl Resolve for StaticResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            if let Some(addrs) = self.table.get(&normalise(host)) {
                return Ok(addrs.clone());
            }
            match &self.fallback {
                Some(f) => f.resolve(host).await,
                None => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "name not in the resolver table",
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_resolver_parses_and_answers() {
        let r: StaticResolver = "IMAP.gmail.com.=127.0.0.2,[::1]".parse().unwrap();
        assert_eq!(
            r.resolve("imap.gmail.com").await.unwrap(),
            vec![
                "127.0.0.2".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        let e = r.resolve("other.example").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        for (input, want) in [
            ("imap.gmail.com", "missing '='"),
            ("=1.2.3.4", "empty name"),
            ("a.b=1.2.3", "not an IP address"),
            ("a_b.c=1.2.3.4", "name:"),
            ("a.b=", "not an IP address"),
        ] {
            let e = input.parse::<StaticResolver>().unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
            assert!(e.contains("expected NAME=IP"), "{input}: {e}");
        }
    }

    #[tokio::test]
    async fn static_resolver_falls_back() {
        let mut inner = StaticResolver::new();
        inner.insert("b.test", vec!["127.0.0.3".parse().unwrap()]);
        let r = "a.test=127.0.0.2"
            .parse::<StaticResolver>()
            .unwrap()
            .with_fallback(Arc::new(inner));
        assert_eq!(
            r.resolve("b.test").await.unwrap(),
            vec!["127.0.0.3".parse::<IpAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn system_resolver_answers_ip_literals_and_localhost() {
        let r = SystemResolver;
        assert_eq!(
            r.resolve("127.0.0.5").await.unwrap(),
            vec!["127.0.0.5".parse::<IpAddr>().unwrap()]
        );
        let lo = r.resolve("localhost").await.unwrap();
        assert!(lo.iter().all(|a| a.is_loopback()), "{lo:?}");
    }
}

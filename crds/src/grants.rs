//! The grant vocabulary, defined once and used by every enforcer.
//!
//! A skill *requests* capabilities (local `skill.json`, cluster `Skill`) and an operator of the
//! allowlist *grants* them. What a skill gets is always `requests ∩ grants`
//! ([`Grants::effective`]); what it asked for and did not get is reported as
//! [`Missing`] (status `PendingGrants`, audit `ALLOWLIST_VIOLATION`).
//!
//! Textual forms (CLI flags, JSON, CRD fields) are parsed here and nowhere else:
//! - network: `host:port`, `*.example.com:443`, `10.0.0.5:5432`, `[2001:db8::1]:443`
//! - filesystem: `PATH:ro` / `PATH:rw` (`~/…`, absolute, or relative to the workspace root)
//! - env: an exact name (`IMAP_PASSWORD`) or a prefix pattern (`AWS_*`); a pattern never
//!   matches a secret-looking name ([`is_secret_like`]).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// Why a textual grant, request or name was refused. Each message names what was wrong and
/// what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("network grant {input:?}: {reason} (expected HOST:PORT, e.g. imap.gmail.com:993)")]
    Network { input: String, reason: String },
    #[error(
        "filesystem grant {input:?}: {reason} (expected PATH:ro or PATH:rw, e.g. ~/.ironclaw/workspace/shared:ro)"
    )]
    Filesystem { input: String, reason: String },
    #[error(
        "env grant {input:?}: {reason} (expected a variable name like IMAP_PASSWORD or a prefix pattern like AWS_*)"
    )]
    Env { input: String, reason: String },
    #[error(
        "skill name {input:?}: {reason} (expected 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)"
    )]
    SkillName { input: String, reason: String },
}

fn net_err(input: &str, reason: impl Into<String>) -> GrantError {
    GrantError::Network {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// Validates a skill name (a DNS-1123 label, so the same name works as a Kubernetes object name).
pub fn validate_skill_name(name: &str) -> Result<(), GrantError> {
    let err = |reason: &str| GrantError::SkillName {
        input: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(err("empty"));
    }
    if name.len() > 63 {
        return Err(err("longer than 63 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(err("contains a character other than a-z, 0-9 and '-'"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(err("starts or ends with '-'"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------------------------

/// The host part of a network grant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// A DNS name, lower-cased, without a trailing dot.
    Name(String),
    /// `*.example.com`: any name below `example.com` (not `example.com` itself). Accepted, but
    /// `ironclaw doctor` flags it: the checklist asks for specific hosts.
    WildcardSuffix(String),
    /// An IP literal. Private, loopback, link-local and metadata addresses are reachable only
    /// through a grant that names the address itself.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::WildcardSuffix(s) => write!(f, "*.{s}"),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
        }
    }
}

fn valid_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty host".into());
    }
    if name.len() > 253 {
        return Err("host longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label in host (two dots in a row?)".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "label {label:?} has a character other than a-z, 0-9 and '-'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    // An all-numeric dotted name that did not parse as an IP is a typo, not a host name.
    if name
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("looks like an IPv4 address but is not a valid one".into());
    }
    Ok(())
}

impl Host {
    /// Parses a host as written in a grant (no port).
    pub fn parse(input: &str) -> Result<Host, String> {
        let host = input.trim_end_matches('.').to_ascii_lowercase();
        if host == "*" {
            return Err("a bare '*' host would allow every destination; name the host".into());
        }
        if let Some(rest) = host.strip_prefix('[') {
            let inner = rest
                .strip_suffix(']')
                .ok_or("unterminated '[' in IPv6 address")?;
            let ip: Ipv6Addr = inner
                .parse()
                .map_err(|_| format!("{inner:?} is not an IPv6 address"))?;
            return Ok(Host::Ip(IpAddr::V6(ip)));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if let Some(suffix) = host.strip_prefix("*.") {
            valid_dns_name(suffix)?;
            if !suffix.contains('.') {
                return Err(format!(
                    "wildcard '*.{suffix}' covers a whole top-level domain; name a host"
                ));
            }
            return Ok(Host::WildcardSuffix(suffix.to_owned()));
        }
        if host.contains('*') {
            return Err("'*' is only allowed as a whole leading label ('*.example.com')".into());
        }
        valid_dns_name(&host)?;
        Ok(Host::Name(host))
    }

    /// Whether this grant host covers the concrete destination `name` (a DNS name or an IP
    /// literal as the skill asked for it, before any resolution).
    pub fn matches_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let name = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(&name);
        match self {
            Host::Name(n) => *n == name,
            Host::WildcardSuffix(s) => {
                name.len() > s.len() + 1
                    && name.ends_with(s.as_str())
                    && name.as_bytes()[name.len() - s.len() - 1] == b'.'
            }
            Host::Ip(ip) => name.parse::<IpAddr>().is_ok_and(|a| a == *ip),
        }
    }

    /// Whether this grant host covers everything `other` covers.
    pub fn covers(&self, other: &Host) -> bool {
        match (self, other) {
            (a, b) if a == b => true,
            (Host::WildcardSuffix(s), Host::Name(n)) => {
                Host::WildcardSuffix(s.clone()).matches_name(n)
            }
            (Host::WildcardSuffix(s), Host::WildcardSuffix(o)) => o.ends_with(&format!(".{s}")),
            _ => false,
        }
    }

    pub fn is_wildcard(&self) -> bool {
        matches!(self, Host::WildcardSuffix(_))
    }
}

/// One network grant or request: a host (or IP) and one TCP port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkGrant {
    pub host: Host,
    pub port: u16,
}

impl NetworkGrant {
    /// Whether a connection to `name:port` (name as the skill wrote it) is covered.
    pub fn allows(&self, name: &str, port: u16) -> bool {
        self.port == port && self.host.matches_name(name)
    }

    pub fn covers(&self, other: &NetworkGrant) -> bool {
        self.port == other.port && self.host.covers(&other.host)
    }
}

impl FromStr for NetworkGrant {
    type Err = GrantError;
    fn from_str(input: &str) -> Result<Self, GrantError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(net_err(input, "empty"));
        }
        if s.contains("://") || s.contains('/') {
            return Err(net_err(input, "a grant is a host and a port, not a URL"));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| net_err(input, "missing ':PORT'"))?;
        if host.contains(':') && !host.starts_with('[') {
            return Err(net_err(
                input,
                "IPv6 addresses must be written in brackets, e.g. [2001:db8::1]:443",
            ));
        }
        if port == "*" {
            return Err(net_err(
                input,
                "a wildcard port is not allowed; grant each port",
            ));
        }
        let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
            net_err(
                input,
                format!("port {port:?} is not a number from 1 to 65535"),
            )
        })?;
        let host = Host::parse(host).map_err(|r| net_err(input, r))?;
        Ok(NetworkGrant { host, port })
    }
}

impl fmt::Display for NetworkGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

// ---------------------------------------------------------------------------------------------
// Filesystem
// ---------------------------------------------------------------------------------------------

/// Access level of a filesystem grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read-only (`:ro`).
    Ro,
    /// Read-write (`:rw`).
    Rw,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Ro => "ro",
            Access::Rw => "rw",
        })
    }
}

/// One filesystem grant or request: a path and an access level.
///
/// The path is kept as written after normalisation (`~/` stays `~/`, relative stays relative to
/// the workspace root `~/.ironclaw/workspace/`); [`FsGrant::resolve`] turns it into an absolute
/// path for a given home and workspace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FsGrant {
    pub path: String,
    pub access: Access,
}

impl FsGrant {
    /// The absolute path this grant names: `~/x` → `home/x`, `/x` → `/x`, `x` → `workspace/x`.
    pub fn resolve(
        &self,
        home: &std::path::Path,
        workspace: &std::path::Path,
    ) -> std::path::PathBuf {
        if self.path == "~" {
            home.to_path_buf()
        } else if let Some(rest) = self.path.strip_prefix("~/") {
            home.join(rest)
        } else if self.path.starts_with('/') {
            std::path::PathBuf::from(&self.path)
        } else {
            workspace.join(&self.path)
        }
    }

    /// Whether this grant covers `other`: same path or a parent of it, and at least as much access.
    pub fn covers(&self, other: &FsGrant) -> bool {
        self.access >= other.access && path_within(&other.path, &self.path)
    }
}

/// `child` equals `parent` or lies below it (component-wise, on normalised grant paths).
fn path_within(child: &str, parent: &str) -> bool {
    child == parent
        || parent == "/"
        || (child.len() > parent.len()
            && child.starts_with(parent)
            && child.as_bytes()[parent.len()] == b'/')
}

fn normalise_grant_path(input: &str, path: &str) -> Result<String, GrantError> {
    let err = |reason: &str| GrantError::Filesystem {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    if path.is_empty() {
        return Err(err("empty path"));
    }
    if path.contains('\0') {
        return Err(err("path contains a NUL byte"));
    }
    let (prefix, rest) = if path == "~" {
        ("~", "")
    } else if let Some(r) = path.strip_prefix("~/") {
        ("~/", r)
    } else if path.starts_with('~') {
        return Err(err(
            "'~user' paths are not supported; use ~/ or an absolute path",
        ));
    } else if let Some(r) = path.strip_prefix('/') {
        ("/", r)
    } else {
        ("", path)
    };
    let mut parts = Vec::new();
    for c in rest.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(err("'..' is not allowed in a grant path")),
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    Ok(match prefix {
        "~" => "~".to_owned(),
        "~/" if joined.is_empty() => "~".to_owned(),
        "/" => format!("/{joined}"),
        "" if joined.is_empty() => return Err(err("empty path")),
        p => format!("{p}{joined}"),
    })
}

impl FromStr for FsGrant {
    type Err = GrantError;
    fn from_str(input: &str) -> Result<Self, GrantError> {
        let err = |reason: &str| GrantError::Filesystem {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (path, access) = input
            .rsplit_once(':')
            .ok_or_else(|| err("missing ':ro' or ':rw' suffix"))?;
        let access = match access {
            "ro" => Access::Ro,
            "rw" => Access::Rw,
            other => return Err(err(&format!("access {other:?} is not 'ro' or 'rw'"))),
        };
        Ok(FsGrant {
            path: normalise_grant_path(input, path)?,
            access,
        })
    }
}

impl fmt::Display for FsGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path, self.access)
    }
}

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

/// Whether a variable name looks like it holds a secret. Such names are never matched by a
/// pattern grant (`AWS_*` does not give `AWS_SECRET_ACCESS_KEY`): they need an exact-name grant.
///
/// Covers the spec's `*_API_KEY` and `*_TOKEN`, and likewise `*_KEY`, `*SECRET*`, `*PASSWORD*`,
/// `*PASSWD*`, `*CREDENTIAL*` and `*TOKEN*` (case-insensitive).
pub fn is_secret_like(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    n.ends_with("_KEY")
        || n == "KEY"
        || n.contains("API_KEY")
        || n.contains("APIKEY")
        || n.contains("PRIVATE_KEY")
        || n.contains("TOKEN")
        || n.contains("SECRET")
        || n.contains("PASSWORD")
        || n.contains("PASSWD")
        || n.contains("CREDENTIAL")
}

/// An env grant or request: an exact variable name, or a prefix pattern ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EnvGrant {
    Exact(String),
    /// `AWS_*`: every name starting with the prefix, except secret-looking ones.
    Prefix(String),
}

impl EnvGrant {
    /// Whether the variable `name` is covered by this grant.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            EnvGrant::Exact(n) => n == name,
            EnvGrant::Prefix(p) => name.starts_with(p.as_str()) && !is_secret_like(name),
        }
    }

    pub fn covers(&self, other: &EnvGrant) -> bool {
        match (self, other) {
            (a, b) if a == b => true,
            (g, EnvGrant::Exact(n)) => g.matches(n),
            (EnvGrant::Prefix(p), EnvGrant::Prefix(q)) => q.starts_with(p.as_str()),
            _ => false,
        }
    }

    pub fn is_pattern(&self) -> bool {
        matches!(self, EnvGrant::Prefix(_))
    }
}

impl FromStr for EnvGrant {
    type Err = GrantError;
    fn from_str(input: &str) -> Result<Self, GrantError> {
        let err = |reason: &str| GrantError::Env {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (body, pattern) = match input.strip_suffix('*') {
            Some(p) => (p, true),
            None => (input, false),
        };
        if body.is_empty() {
            return Err(err(if pattern {
                "a bare '*' would pass the whole environment; name the variables"
            } else {
                "empty"
            }));
        }
        if body.contains('*') {
            return Err(err("'*' is only allowed once, at the end"));
        }
        let mut bytes = body.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        if !first_ok || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(err(
                "names use A-Z, a-z, 0-9 and '_' and do not start with a digit",
            ));
        }
        Ok(if pattern {
            EnvGrant::Prefix(body.to_owned())
        } else {
            EnvGrant::Exact(body.to_owned())
        })
    }
}

impl fmt::Display for EnvGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvGrant::Exact(n) => f.write_str(n),
            EnvGrant::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

// Serde: every grant (de)serialises as its textual form, so JSON, CLI flags and CRDs agree.
macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_str!(NetworkGrant);
serde_via_str!(FsGrant);
serde_via_str!(EnvGrant);

// ---------------------------------------------------------------------------------------------
// Grant sets
// ---------------------------------------------------------------------------------------------

/// A set of grants (or of requests: the vocabulary is the same).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Destinations as `host:port`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<NetworkGrant>,
    /// Variable names or prefix patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvGrant>,
    /// Paths with `:ro` / `:rw`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filesystem: Vec<FsGrant>,
    /// Whether the skill may execute a shell.
    #[serde(default)]
    pub shell: bool,
}

/// What a skill requested and was not granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<NetworkGrant>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvGrant>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filesystem: Vec<FsGrant>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shell: bool,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        self.network.is_empty() && self.env.is_empty() && self.filesystem.is_empty() && !self.shell
    }

    /// Short human-readable list, e.g. `network attacker.io:80, shell`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(self.network.iter().map(|g| format!("network {g}")));
        parts.extend(self.env.iter().map(|g| format!("env {g}")));
        parts.extend(self.filesystem.iter().map(|g| format!("filesystem {g}")));
        if self.shell {
            parts.push("shell".into());
        }
        parts.join(", ")
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, item: T) -> bool {
    if v.contains(&item) {
        false
    } else {
        v.push(item);
        true
    }
}

impl Grants {
    /// `requests ∩ self`: what a skill requesting `requests` may actually use, plus what it
    /// asked for and did not get. A request is kept when some grant covers it; filesystem
    /// access is capped at what the covering grant allows.
    pub fn effective(&self, requests: &Grants) -> (Grants, Missing) {
        let mut eff = Grants::default();
        let mut missing = Missing::default();
        for r in &requests.network {
            if self.network.iter().any(|g| g.covers(r)) {
                push_unique(&mut eff.network, r.clone());
            } else {
                push_unique(&mut missing.network, r.clone());
            }
        }
        for r in &requests.env {
            if self.env.iter().any(|g| g.covers(r)) {
                push_unique(&mut eff.env, r.clone());
            } else {
                push_unique(&mut missing.env, r.clone());
            }
        }
        for r in &requests.filesystem {
            let best = self
                .filesystem
                .iter()
                .filter(|g| path_within(&r.path, &g.path))
                .map(|g| g.access)
                .max();
            match best {
                Some(a) if a >= r.access => {
                    push_unique(&mut eff.filesystem, r.clone());
                }
                Some(a) => {
                    // Granted less than asked: keep the lesser access, report the rest.
                    push_unique(
                        &mut eff.filesystem,
                        FsGrant {
                            path: r.path.clone(),
                            access: a,
                        },
                    );
                    push_unique(&mut missing.filesystem, r.clone());
                }
                None => {
                    push_unique(&mut missing.filesystem, r.clone());
                }
            }
        }
        eff.shell = requests.shell && self.shell;
        missing.shell = requests.shell && !self.shell;
        (eff, missing)
    }

    /// Whether an env variable may be passed (by exact name or a pattern that spares secrets).
    pub fn allows_env(&self, name: &str) -> bool {
        self.env.iter().any(|g| g.matches(name))
    }

    /// Whether a connection to `name:port` is granted.
    pub fn allows_network(&self, name: &str, port: u16) -> bool {
        self.network.iter().any(|g| g.allows(name, port))
    }

    /// Adds every grant of `other` not already present; returns whether anything changed.
    pub fn merge(&mut self, other: &Grants) -> bool {
        let mut changed = false;
        for g in &other.network {
            changed |= push_unique(&mut self.network, g.clone());
        }
        for g in &other.env {
            changed |= push_unique(&mut self.env, g.clone());
        }
        for g in &other.filesystem {
            changed |= push_unique(&mut self.filesystem, g.clone());
        }
        if other.shell && !self.shell {
            self.shell = true;
            changed = true;
        }
        changed
    }

    /// Removes every grant listed in `other` (shell when `other.shell`); returns whether
    /// anything changed.
    pub fn revoke(&mut self, other: &Grants) -> bool {
        let before = self.clone();
        self.network.retain(|g| !other.network.contains(g));
        self.env.retain(|g| !other.env.contains(g));
        self.filesystem.retain(|g| !other.filesystem.contains(g));
        if other.shell {
            self.shell = false;
        }
        *self != before
    }

    pub fn is_empty(&self) -> bool {
        self.network.is_empty() && self.env.is_empty() && self.filesystem.is_empty() && !self.shell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> NetworkGrant {
        s.parse().unwrap()
    }

    #[test]
    fn network_grants_parse_and_refuse_with_reasons() {
        assert_eq!(net("IMAP.Gmail.com.:993").to_string(), "imap.gmail.com:993");
        assert_eq!(net("[2001:db8::1]:443").to_string(), "[2001:db8::1]:443");
        assert_eq!(
            net("10.0.0.5:5432").host,
            Host::Ip("10.0.0.5".parse().unwrap())
        );
        assert!(net("*.example.com:443").host.is_wildcard());
        let cases = [
            ("*:443", "bare '*'"),
            ("example.com", "missing ':PORT'"),
            ("example.com:0", "not a number from 1 to 65535"),
            ("example.com:65536", "not a number from 1 to 65535"),
            ("example.com:*", "wildcard port"),
            ("https://example.com:443", "not a URL"),
            ("2001:db8::1:443", "brackets"),
            ("exa_mple.com:80", "character other than"),
            ("a..b:80", "empty label"),
            ("*.com:443", "top-level domain"),
            ("foo*.example.com:443", "whole leading label"),
            ("999.1.1.1:80", "not a valid one"),
            (":80", "empty host"),
        ];
        for (input, want) in cases {
            let e = input.parse::<NetworkGrant>().unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
            assert!(e.contains("expected HOST:PORT"), "{input}: {e}");
        }
    }

    #[test]
    fn network_matching_is_exact_or_subdomain() {
        let g = net("*.example.com:443");
        assert!(g.allows("api.example.com", 443));
        assert!(g.allows("a.b.example.com", 443));
        assert!(!g.allows("example.com", 443));
        assert!(!g.allows("evilexample.com", 443));
        assert!(!g.allows("api.example.com", 80));
        assert!(net("imap.gmail.com:993").allows("IMAP.gmail.com.", 993));
        assert!(net("[::1]:80").allows("[::1]", 80));
        assert!(net("[::1]:80").allows("::1", 80));
        assert!(!net("imap.gmail.com:993").allows("imap.gmail.com.evil.io", 993));
    }

    #[test]
    fn filesystem_grants_need_access_and_no_dotdot() {
        let g: FsGrant = "~/.ironclaw/workspace/shared/:ro".parse().unwrap();
        assert_eq!(g.to_string(), "~/.ironclaw/workspace/shared:ro");
        assert_eq!("shared:rw".parse::<FsGrant>().unwrap().path, "shared");
        assert_eq!(
            "/srv//data/./x:ro".parse::<FsGrant>().unwrap().path,
            "/srv/data/x"
        );
        for (input, want) in [
            ("~/x", "missing ':ro' or ':rw'"),
            ("~/x:rx", "is not 'ro' or 'rw'"),
            ("~/../etc:ro", "'..'"),
            (":ro", "empty path"),
            ("~bob/x:ro", "'~user'"),
        ] {
            let e = input.parse::<FsGrant>().unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
        let home = std::path::Path::new("/home/u");
        let ws = std::path::Path::new("/home/u/.ironclaw/workspace");
        assert_eq!(
            g.resolve(home, ws),
            std::path::Path::new("/home/u/.ironclaw/workspace/shared")
        );
        let rel: FsGrant = "shared:ro".parse().unwrap();
        assert_eq!(
            rel.resolve(home, ws),
            std::path::Path::new("/home/u/.ironclaw/workspace/shared")
        );
    }

    #[test]
    fn env_patterns_never_match_secrets() {
        let p: EnvGrant = "AWS_*".parse().unwrap();
        assert!(p.matches("AWS_REGION"));
        for secret in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_API_KEY",
            "AWS_DB_PASSWORD",
            "AWS_CREDENTIALS_FILE",
            "AWS_SIGNING_KEY",
        ] {
            assert!(!p.matches(secret), "{secret}");
        }
        let exact: EnvGrant = "GITHUB_TOKEN".parse().unwrap();
        assert!(exact.matches("GITHUB_TOKEN"));
        assert!(!exact.matches("GITHUB_TOKEN2"));
        for (input, want) in [
            ("*", "bare '*'"),
            ("A*B*", "only allowed once"),
            ("1ABC", "do not start with a digit"),
            ("A-B", "names use"),
            ("", "empty"),
        ] {
            let e = input.parse::<EnvGrant>().unwrap_err().to_string();
            assert!(e.contains(want), "{input:?}: {e}");
        }
    }

    #[test]
    fn effective_is_the_intersection_and_reports_what_is_missing() {
        let granted: Grants = serde_json::from_str(
            r#"{"network":["imap.gmail.com:993","*.googleapis.com:443"],"env":["IMAP_*","SMTP_PASSWORD"],
                "filesystem":["~/.ironclaw/workspace/shared:ro"],"shell":false}"#,
        )
        .unwrap();
        let requested: Grants = serde_json::from_str(
            r#"{"network":["imap.gmail.com:993","attacker.io:80","www.googleapis.com:443"],
                "env":["IMAP_USER","IMAP_PASSWORD","SMTP_PASSWORD"],
                "filesystem":["~/.ironclaw/workspace/shared/inbox:rw"],"shell":true}"#,
        )
        .unwrap();
        let (eff, missing) = granted.effective(&requested);
        assert_eq!(
            eff.network,
            vec![net("imap.gmail.com:993"), net("www.googleapis.com:443")]
        );
        assert_eq!(
            eff.env.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["IMAP_USER", "SMTP_PASSWORD"]
        );
        assert_eq!(
            eff.filesystem,
            vec!["~/.ironclaw/workspace/shared/inbox:ro".parse().unwrap()]
        );
        assert!(!eff.shell);
        assert_eq!(
            missing.describe(),
            "network attacker.io:80, env IMAP_PASSWORD, filesystem ~/.ironclaw/workspace/shared/inbox:rw, shell"
        );
    }

    #[test]
    fn merge_and_revoke_report_changes() {
        let mut g = Grants::default();
        let add: Grants = serde_json::from_str(r#"{"network":["a.io:1"],"shell":true}"#).unwrap();
        assert!(g.merge(&add));
        assert!(!g.merge(&add));
        assert!(g.revoke(&add));
        assert!(g.is_empty());
        assert!(!g.revoke(&add));
    }

    #[test]
    fn grants_reject_unknown_fields_and_bad_entries() {
        let e = serde_json::from_str::<Grants>(r#"{"netwrk":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `netwrk`"), "{e}");
        let e = serde_json::from_str::<Grants>(r#"{"filesystem":["/etc"]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing ':ro' or ':rw'"), "{e}");
    }

    #[test]
    fn skill_names_are_dns_labels() {
        validate_skill_name("daily-brief").unwrap();
        for bad in ["", "Daily", "a_b", "-a", "a-", &"x".repeat(64), "../x"] {
            assert!(validate_skill_name(bad).is_err(), "{bad}");
        }
    }
}

//! The grant checks, as pure functions: the name check (before any resolution) and the address
//! check (every resolved address, before any connect).

use crate::addr::{AddrClass, classify};
use crate::event::BlockReason;
use ironclaw_crds::{Host, NetworkGrant};
use std::net::IpAddr;

/// Longest host accepted from a request (a DNS name is at most 253 characters).
pub const MAX_HOST_LEN: usize = 255;

/// A destination as the skill named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lower-cased, no trailing dot, IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// The parsed host: a name or an IP literal (never a wildcard).
    pub parsed: Host,
}

impl Target {
    /// Parses the host of a request (`example.com`, `10.0.0.5`, `[::1]` or `::1`).
    pub fn new(host: &str, port: u16) -> Result<Target, String> {
        if host.len() > MAX_HOST_LEN {
            return Err("host longer than 255 characters".into());
        }
        if port == 0 {
            return Err("port 0".into());
        }
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let parsed = if let Ok(ip) = bare.parse::<IpAddr>() {
            Host::Ip(ip)
        } else {
            Host::parse(bare)?
        };
        let host = match &parsed {
            Host::Name(n) => n.clone(),
            Host::Ip(ip) => ip.to_string(),
            Host::WildcardSuffix(_) => return Err("a wildcard is not a destination".into()),
        };
        Ok(Target { host, port, parsed })
    }

    /// The host for a bounded, printable event field when the request could not be parsed.
    pub fn sanitize(host: &str) -> String {
        host.chars()
            .filter(|c| c.is_ascii_graphic())
            .take(MAX_HOST_LEN)
            .collect::<String>()
            .to_ascii_lowercase()
    }
}

/// The grants in force and the checks made against them.
#[derive(Debug, Clone)]
pub struct Policy {
    grants: Vec<NetworkGrant>,
    granted: Vec<String>,
}

impl Policy {
    pub fn new(grants: Vec<NetworkGrant>) -> Self {
        let granted = grants.iter().map(ToString::to_string).collect();
        Policy { grants, granted }
    }

    pub fn grants(&self) -> &[NetworkGrant] {
        &self.grants
    }

    /// The grants as written, for events.
    pub fn granted(&self) -> &[String] {
        &self.granted
    }

    /// The name check: does a grant cover `host:port` as the skill named it? Made before any
    /// resolution.
    pub fn allows_name(&self, target: &Target) -> bool {
        self.grants
            .iter()
            .any(|g| g.allows(&target.host, target.port))
    }

    /// Whether a grant names this address literally with this port.
    pub fn names_address(&self, ip: IpAddr, port: u16) -> bool {
        self.grants
            .iter()
            .any(|g| g.port == port && g.host == Host::Ip(ip))
    }

    /// The address check, on every address a name resolved to: a non-public address passes only
    /// when a grant names it literally. Returns the first refused address and why.
    pub fn check_addresses(
        &self,
        addrs: &[IpAddr],
        port: u16,
    ) -> Result<(), (BlockReason, IpAddr)> {
        for &ip in addrs {
            let class = classify(ip);
            if class.is_public() || self.names_address(ip, port) {
                continue;
            }
            let reason = if class == AddrClass::Metadata {
                BlockReason::MetadataAddress
            } else {
                BlockReason::PrivateAddress
            };
            return Err((reason, ip));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(grants: &[&str]) -> Policy {
        Policy::new(grants.iter().map(|g| g.parse().unwrap()).collect())
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn name_check_uses_the_grant_vocabulary() {
        let p = policy(&[
            "imap.gmail.com:993",
            "*.googleapis.com:443",
            "10.0.0.5:5432",
        ]);
        let t = |h: &str, port| Target::new(h, port).unwrap();
        assert!(p.allows_name(&t("IMAP.gmail.com.", 993)));
        assert!(!p.allows_name(&t("imap.gmail.com", 443)));
        assert!(p.allows_name(&t("www.googleapis.com", 443)));
        assert!(!p.allows_name(&t("googleapis.com", 443)));
        assert!(p.allows_name(&t("10.0.0.5", 5432)));
        assert!(!p.allows_name(&t("attacker.io", 80)));
        assert_eq!(p.granted()[0], "imap.gmail.com:993");
    }

    #[test]
    fn targets_parse_and_refuse() {
        assert_eq!(Target::new("[::1]", 80).unwrap().host, "::1");
        assert_eq!(
            Target::new("::1", 80).unwrap().parsed,
            Host::Ip("::1".parse().unwrap())
        );
        assert_eq!(Target::new("Example.COM.", 80).unwrap().host, "example.com");
        for (h, p) in [
            ("*.example.com", 443),
            ("a b", 80),
            ("x.io", 0),
            ("", 80),
            ("a..b", 1),
        ] {
            assert!(Target::new(h, p).is_err(), "{h}:{p}");
        }
        assert!(Target::new(&"a".repeat(300), 80).is_err());
        assert_eq!(Target::sanitize("Ev il\r\nhost"), "evilhost");
    }

    #[test]
    fn public_addresses_pass_a_name_grant() {
        let p = policy(&["api.example.com:443"]);
        assert_eq!(
            p.check_addresses(&ips(&["93.184.216.34", "2606:2800::1"]), 443),
            Ok(())
        );
    }

    #[test]
    fn non_public_addresses_need_a_literal_grant() {
        let p = policy(&["internal.test:8080", "127.0.0.1:8080"]);
        assert_eq!(p.check_addresses(&ips(&["127.0.0.1"]), 8080), Ok(()));
        // The literal grant is for one port only.
        assert_eq!(
            p.check_addresses(&ips(&["127.0.0.1"]), 8081),
            Err((BlockReason::PrivateAddress, "127.0.0.1".parse().unwrap()))
        );
        for a in [
            "10.0.0.1",
            "192.168.0.1",
            "::1",
            "fe80::1",
            "0.0.0.0",
            "224.0.0.1",
            "192.0.2.1",
        ] {
            assert_eq!(
                p.check_addresses(&ips(&[a]), 8080),
                Err((BlockReason::PrivateAddress, a.parse().unwrap())),
                "{a}"
            );
        }
        assert_eq!(
            p.check_addresses(&ips(&["169.254.169.254"]), 8080),
            Err((
                BlockReason::MetadataAddress,
                "169.254.169.254".parse().unwrap()
            ))
        );
        let meta = policy(&["169.254.169.254:80"]);
        assert_eq!(meta.check_addresses(&ips(&["169.254.169.254"]), 80), Ok(()));
    }

    #[test]
    fn one_bad_address_refuses_the_whole_answer() {
        // A rebinding-style answer mixing a public and an internal address is refused outright.
        let p = policy(&["api.example.com:443"]);
        assert_eq!(
            p.check_addresses(&ips(&["93.184.216.34", "127.0.0.1"]), 443),
            Err((BlockReason::PrivateAddress, "127.0.0.1".parse().unwrap()))
        );
    }
}

//! Classification of destination addresses.
//!
//! Only [`AddrClass::Public`] addresses are reachable through a name grant. Every other class
//! (private, loopback, link-local, cloud metadata, …) is reachable only through a grant that names
//! the address itself (`127.0.0.1:8080`). Anything that is not positively known to be global
//! unicast is classified as non-public: the classification fails closed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of destination an address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrClass {
    /// Global unicast: reachable through a name grant.
    Public,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16), IPv6 unique-local fc00::/7, site-local fec0::/10,
    /// local-use NAT64 64:ff9b:1::/48.
    Private,
    /// Shared address space 100.64/10 (carrier-grade NAT, also used inside clusters).
    SharedAddressSpace,
    /// 127/8 and ::1.
    Loopback,
    /// 169.254/16 and fe80::/10.
    LinkLocal,
    /// A cloud provider's instance metadata or platform service (169.254.169.254, fd00:ec2::254,
    /// 100.100.100.200, 168.63.129.16, …): the classic credential-theft target.
    Metadata,
    /// 0.0.0.0/8 and ::.
    Unspecified,
    /// 224/4 and ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 198.18/15 and 2001:2::/48.
    Benchmarking,
    /// Everything else that is not global unicast: 240/4, 192.0.0/24, 192.88.99/24, IPv6 outside
    /// 2000::/3, Teredo, ORCHID, discard-only 100::/64, IPv4-compatible IPv6.
    Reserved,
}

impl AddrClass {
    /// A short, stable name (used in messages and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            AddrClass::Public => "public",
            AddrClass::Private => "private",
            AddrClass::SharedAddressSpace => "shared_address_space",
            AddrClass::Loopback => "loopback",
            AddrClass::LinkLocal => "link_local",
            AddrClass::Metadata => "metadata",
            AddrClass::Unspecified => "unspecified",
            AddrClass::Multicast => "multicast",
            AddrClass::Broadcast => "broadcast",
            AddrClass::Documentation => "documentation",
            AddrClass::Benchmarking => "benchmarking",
            AddrClass::Reserved => "reserved",
        }
    }

    /// Whether a name grant is enough to reach an address of this class.
    pub fn is_public(self) -> bool {
        self == AddrClass::Public
    }
}

impl std::fmt::Display for AddrClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cloud metadata and platform endpoints (IPv4).
const METADATA_V4: [Ipv4Addr; 6] = [
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle …
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task metadata / credentials
    Ipv4Addr::new(169, 254, 170, 23),  // AWS EKS pod identity agent
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(168, 63, 129, 16),   // Azure wire server (a public address!)
    Ipv4Addr::new(192, 0, 0, 192),     // Oracle Cloud legacy metadata
];

/// Cloud metadata endpoints (IPv6).
const METADATA_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254), // AWS IMDS
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0023), // AWS EKS pod identity agent
];

/// Classifies an address. Pure.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    if METADATA_V4.contains(&ip) {
        return AddrClass::Metadata;
    }
    let table: [([u8; 4], u32, AddrClass); 17] = [
        ([0, 0, 0, 0], 8, AddrClass::Unspecified),
        ([10, 0, 0, 0], 8, AddrClass::Private),
        ([100, 64, 0, 0], 10, AddrClass::SharedAddressSpace),
        ([127, 0, 0, 0], 8, AddrClass::Loopback),
        ([169, 254, 0, 0], 16, AddrClass::LinkLocal),
        ([172, 16, 0, 0], 12, AddrClass::Private),
        ([192, 0, 0, 0], 24, AddrClass::Reserved),
        ([192, 0, 2, 0], 24, AddrClass::Documentation),
        ([192, 88, 99, 0], 24, AddrClass::Reserved),
        ([192, 168, 0, 0], 16, AddrClass::Private),
        ([198, 18, 0, 0], 15, AddrClass::Benchmarking),
        ([198, 51, 100, 0], 24, AddrClass::Documentation),
        ([203, 0, 113, 0], 24, AddrClass::Documentation),
        ([224, 0, 0, 0], 4, AddrClass::Multicast),
        ([255, 255, 255, 255], 32, AddrClass::Broadcast),
        ([240, 0, 0, 0], 4, AddrClass::Reserved),
        ([0, 0, 0, 0], 0, AddrClass::Public),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map_or(AddrClass::Reserved, |(_, _, class)| *class)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (u128::from(ip) & mask) == (u128::from(net) & mask)
}

fn v4_at(ip: Ipv6Addr, shift: u32) -> Ipv4Addr {
    // Truncation to the 32 bits of the embedded address is the point here.
    Ipv4Addr::from(((u128::from(ip) >> shift) & 0xffff_ffff) as u32)
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    if METADATA_V6.contains(&ip) {
        return AddrClass::Metadata;
    }
    if ip.is_unspecified() {
        return AddrClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddrClass::Loopback;
    }
    // Addresses that carry an IPv4 address: judge the IPv4 address they lead to.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let p = |s: &str| s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED);
    if in_v6(ip, p("64:ff9b::"), 96) {
        return classify_v4(v4_at(ip, 0)); // NAT64 well-known prefix
    }
    if in_v6(ip, p("2002::"), 16) {
        // 6to4: the embedded address is where the packets go.
        let inner = classify_v4(v4_at(ip, 80));
        return if inner.is_public() {
            AddrClass::Public
        } else {
            inner
        };
    }
    let table: [(&str, u32, AddrClass); 12] = [
        ("::", 96, AddrClass::Reserved), // IPv4-compatible (deprecated)
        ("64:ff9b:1::", 48, AddrClass::Private),
        ("100::", 64, AddrClass::Reserved),
        ("2001::", 32, AddrClass::Reserved), // Teredo
        ("2001:2::", 48, AddrClass::Benchmarking),
        ("2001:10::", 28, AddrClass::Reserved), // ORCHID
        ("2001:20::", 28, AddrClass::Reserved), // ORCHIDv2
        ("2001:db8::", 32, AddrClass::Documentation),
        ("3fff::", 20, AddrClass::Documentation),
        ("fc00::", 7, AddrClass::Private),
        ("fe80::", 10, AddrClass::LinkLocal),
        ("fec0::", 10, AddrClass::Private),
    ];
    if let Some((_, _, class)) = table
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, p(net), *prefix))
    {
        return *class;
    }
    if ip.is_multicast() {
        return AddrClass::Multicast;
    }
    if in_v6(ip, p("2000::"), 3) {
        return AddrClass::Public;
    }
    AddrClass::Reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> AddrClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn ipv4_classes() {
        let cases = [
            ("8.8.8.8", AddrClass::Public),
            ("1.1.1.1", AddrClass::Public),
            ("93.184.216.34", AddrClass::Public),
            ("172.32.0.1", AddrClass::Public),
            ("100.128.0.1", AddrClass::Public),
            ("10.1.2.3", AddrClass::Private),
            ("172.16.0.1", AddrClass::Private),
            ("172.31.255.255", AddrClass::Private),
            ("192.168.1.1", AddrClass::Private),
            ("100.64.0.1", AddrClass::SharedAddressSpace),
            ("127.0.0.1", AddrClass::Loopback),
            ("127.255.0.9", AddrClass::Loopback),
            ("169.254.1.1", AddrClass::LinkLocal),
            ("169.254.169.254", AddrClass::Metadata),
            ("169.254.170.2", AddrClass::Metadata),
            ("100.100.100.200", AddrClass::Metadata),
            ("168.63.129.16", AddrClass::Metadata),
            ("0.0.0.0", AddrClass::Unspecified),
            ("0.1.2.3", AddrClass::Unspecified),
            ("224.0.0.1", AddrClass::Multicast),
            ("239.255.255.250", AddrClass::Multicast),
            ("255.255.255.255", AddrClass::Broadcast),
            ("240.0.0.1", AddrClass::Reserved),
            ("192.0.0.8", AddrClass::Reserved),
            ("192.0.2.1", AddrClass::Documentation),
            ("198.51.100.7", AddrClass::Documentation),
            ("203.0.113.9", AddrClass::Documentation),
            ("198.18.0.1", AddrClass::Benchmarking),
            ("198.19.255.1", AddrClass::Benchmarking),
        ];
        for (ip, want) in cases {
            assert_eq!(c(ip), want, "{ip}");
        }
    }

    #[test]
    fn ipv6_classes() {
        let cases = [
            ("2606:4700:4700::1111", AddrClass::Public),
            ("2a00:1450:4001::200e", AddrClass::Public),
            ("::", AddrClass::Unspecified),
            ("::1", AddrClass::Loopback),
            ("fe80::1", AddrClass::LinkLocal),
            ("fd12:3456::1", AddrClass::Private),
            ("fc00::1", AddrClass::Private),
            ("fec0::1", AddrClass::Private),
            ("fd00:ec2::254", AddrClass::Metadata),
            ("ff02::1", AddrClass::Multicast),
            ("2001:db8::1", AddrClass::Documentation),
            ("3fff::1", AddrClass::Documentation),
            ("2001:2::1", AddrClass::Benchmarking),
            ("2001:0:4136:e378::1", AddrClass::Reserved),
            ("100::1", AddrClass::Reserved),
            ("4000::1", AddrClass::Reserved),
            ("::10.0.0.1", AddrClass::Reserved),
            // IPv4 addresses reached through IPv6 forms are judged by the IPv4 address.
            ("::ffff:127.0.0.1", AddrClass::Loopback),
            ("::ffff:169.254.169.254", AddrClass::Metadata),
            ("::ffff:8.8.8.8", AddrClass::Public),
            ("64:ff9b::a9fe:a9fe", AddrClass::Metadata),
            ("64:ff9b::808:808", AddrClass::Public),
            ("64:ff9b:1::1", AddrClass::Private),
            ("2002:0a00:0001::1", AddrClass::Private),
            ("2002:7f00:0001::1", AddrClass::Loopback),
            ("2002:0808:0808::1", AddrClass::Public),
        ];
        for (ip, want) in cases {
            assert_eq!(c(ip), want, "{ip}");
        }
    }

    #[test]
    fn only_public_is_public() {
        assert!(AddrClass::Public.is_public());
        for class in [
            AddrClass::Private,
            AddrClass::Loopback,
            AddrClass::Metadata,
            AddrClass::Reserved,
        ] {
            assert!(!class.is_public(), "{class}");
        }
    }
}

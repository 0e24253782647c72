//! Addresses a tenant may never reach on its own say-so: the edge's proxy
//! rules and the build sandbox's network both refuse them unless the
//! operator allows them. One list, so the two can never disagree.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address range: the first address and the prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
        Cidr { addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)), prefix }
    }

    pub const fn v6(s: [u16; 8], prefix: u8) -> Cidr {
        Cidr { addr: IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])), prefix }
    }

    /// The range of one address.
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr { addr, prefix: if addr.is_ipv4() { 32 } else { 128 } }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix.min(32))).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix.min(128))).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// `a.b.c.d/n`, `a.b.c.d` (one address), or the IPv6 forms.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are their IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The ranges that are never "the outside": loopback, private networks,
/// link-local (the cloud metadata address 169.254.169.254 among them),
/// carrier-grade NAT, unspecified, multicast and reserved space, with the
/// reason each is refused.
pub const INTERNAL_RANGES: &[(Cidr, &str)] = &[
    (Cidr::v4(0, 0, 0, 0, 8), "an unspecified address (0.0.0.0/8)"),
    (Cidr::v4(10, 0, 0, 0, 8), "a private address (10.0.0.0/8)"),
    (Cidr::v4(100, 64, 0, 0, 10), "a shared address (100.64.0.0/10)"),
    (Cidr::v4(127, 0, 0, 0, 8), "a loopback address (127.0.0.0/8)"),
    (Cidr::v4(169, 254, 0, 0, 16), "a link-local address (169.254.0.0/16, cloud metadata)"),
    (Cidr::v4(172, 16, 0, 0, 12), "a private address (172.16.0.0/12)"),
    (Cidr::v4(192, 0, 0, 0, 24), "an IETF protocol address (192.0.0.0/24)"),
    (Cidr::v4(192, 168, 0, 0, 16), "a private address (192.168.0.0/16)"),
    (Cidr::v4(198, 18, 0, 0, 15), "a benchmarking address (198.18.0.0/15)"),
    (Cidr::v4(224, 0, 0, 0, 4), "a multicast address (224.0.0.0/4)"),
    (Cidr::v4(240, 0, 0, 0, 4), "a reserved address (240.0.0.0/4)"),
    (Cidr { addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED), prefix: 128 }, "the unspecified address (::)"),
    (Cidr { addr: IpAddr::V6(Ipv6Addr::LOCALHOST), prefix: 128 }, "the loopback address (::1)"),
    (
        Cidr { addr: IpAddr::V6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)), prefix: 7 },
        "a unique local address (fc00::/7)",
    ),
    (
        Cidr { addr: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), prefix: 10 },
        "a link-local address (fe80::/10)",
    ),
    (
        Cidr { addr: IpAddr::V6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0)), prefix: 8 },
        "a multicast address (ff00::/8)",
    ),
    (
        Cidr { addr: IpAddr::V6(Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0)), prefix: 48 },
        "a local NAT64 address (64:ff9b:1::/48)",
    ),
    (Cidr::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96), "a NAT64 address of an IPv4 address (64:ff9b::/96)"),
    (Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), "a 6to4 address (2002::/16)"),
    (Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), "a site-local address (fec0::/10)"),
    // After `::` and `::1`, which it contains.
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96), "an IPv4-compatible address (::/96)"),
];

/// Why `ip` is internal, or `None` for an outside address. `own` are this
/// machine's addresses (on any interface), which are refused too.
pub fn internal_reason(ip: IpAddr, own: &[IpAddr]) -> Option<&'static str> {
    let ip = canonical(ip);
    if let Some((_, why)) = INTERNAL_RANGES.iter().find(|(range, _)| range.contains(ip)) {
        return Some(why);
    }
    own.iter().any(|o| canonical(*o) == ip).then_some("an address of this machine")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_named() {
        for (addr, want) in [
            ("127.0.0.1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("169.254.169.254", "metadata"),
            ("10.1.2.3", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fd00::2", "unique local"),
            ("fe80::1", "link-local"),
            ("100.100.100.100", "shared"),
            ("64:ff9b::7f00:1", "NAT64"),
            ("2002:7f00:1::1", "6to4"),
            ("::7f00:1", "IPv4-compatible"),
        ] {
            let why = internal_reason(ip(addr), &[]).unwrap_or_else(|| panic!("{addr} is internal"));
            assert!(why.contains(want), "{addr}: {why}");
        }
        for addr in ["93.184.216.34", "172.32.0.1", "2606:4700::1111", "192.0.2.2"] {
            assert_eq!(internal_reason(ip(addr), &[]), None, "{addr}");
        }
        assert_eq!(internal_reason(ip("192.0.2.2"), &[ip("192.0.2.2")]), Some("an address of this machine"));
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let c = Cidr::parse("10.0.2.0/24").unwrap();
        assert!(c.contains(ip("10.0.2.3")) && !c.contains(ip("10.0.3.1")));
        assert_eq!(Cidr::parse("127.0.0.1").unwrap().prefix, 32);
        assert!(Cidr::parse("::1/129").is_none() && Cidr::parse("x/8").is_none());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert_eq!(Cidr::parse("fd00::/8").unwrap().to_string(), "fd00::/8");
    }
}

//! Networks a token is bound to: it validates only for a client address inside one of them.

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;

/// Most networks one token may be bound to.
pub(crate) const MAX_NETWORKS: usize = 32;

/// The networks of a token, in canonical form (host bits cleared), in the order given,
/// without duplicates. Empty: any address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Networks(Vec<IpNet>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NetworkError {
    #[error(
        "{0:?} is neither a network in CIDR notation (203.0.113.0/24, 2001:db8::/32) nor an address"
    )]
    Syntax(String),
    #[error("at most {MAX_NETWORKS} networks")]
    TooMany,
}

impl Networks {
    /// Parses CIDR networks or bare addresses (a bare address is a network of one).
    pub(crate) fn parse<'a>(
        items: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, NetworkError> {
        let mut nets: Vec<IpNet> = Vec::new();
        for item in items {
            let net = parse_one(item).ok_or_else(|| NetworkError::Syntax(item.to_owned()))?;
            if !nets.contains(&net) {
                nets.push(net);
            }
            if nets.len() > MAX_NETWORKS {
                return Err(NetworkError::TooMany);
            }
        }
        Ok(Self(nets))
    }

    /// Networks already parsed (the configuration's).
    pub(crate) fn from_nets(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut v: Vec<IpNet> = Vec::new();
        for n in nets.into_iter().map(canonical) {
            if !v.contains(&n) {
                v.push(n);
            }
        }
        Self(v)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `addr` is inside one of the networks. An IPv4 address written as IPv6
    /// (`::ffff:192.0.2.1`) is the IPv4 address.
    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|n| n.contains(&addr))
    }

    /// Each network in CIDR notation.
    pub(crate) fn names(&self) -> Vec<String> {
        self.0.iter().map(IpNet::to_string).collect()
    }
}

impl fmt::Display for Networks {
    /// Comma-separated CIDR notation (how the store keeps them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

fn parse_one(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(canonical(net).trunc());
    }
    s.parse::<IpAddr>()
        .ok()
        .map(|a| IpNet::from(a.to_canonical()))
}

/// `::ffff:a.b.c.d/n` (n ≥ 96) is the IPv4 network `a.b.c.d/(n−96)`.
fn canonical(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(n) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(n);
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_and_addresses_on_both_families() {
        let n = Networks::parse(["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]).unwrap();
        assert!(n.contains(ip("203.0.113.200")));
        assert!(!n.contains(ip("203.0.114.1")));
        assert!(n.contains(ip("2001:db8:1::5")));
        assert!(!n.contains(ip("2001:db9::1")));
        assert!(n.contains(ip("198.51.100.7")));
        assert!(!n.contains(ip("198.51.100.8")));
        // An IPv4 client seen on an IPv6 socket.
        assert!(n.contains(ip("::ffff:203.0.113.9")));
        assert_eq!(
            n.names(),
            ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]
        );
    }

    #[test]
    fn host_bits_are_cleared_and_duplicates_dropped() {
        let n = Networks::parse(["10.1.2.3/8", "10.0.0.0/8", "::ffff:10.0.0.0/104"]).unwrap();
        assert_eq!(n.names(), ["10.0.0.0/8"]);
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert_eq!(Networks::parse(n.to_string().split(',')).unwrap(), n);
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "10.0.0.0/33",
            "example.com",
            "10.0.0.0/8/8",
            "::/129",
            "1.2.3.4:80",
        ] {
            assert!(Networks::parse([bad]).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..=MAX_NETWORKS)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect();
        assert_eq!(
            Networks::parse(many.iter().map(String::as_str)),
            Err(NetworkError::TooMany)
        );
        assert!(Networks::parse([]).unwrap().is_empty());
    }
}

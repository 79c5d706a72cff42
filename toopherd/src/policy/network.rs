//! Trusted networks: CIDR blocks, and the only way an `rhost` can fall into one. An rhost
//! counts only when it is an IP address literal: a host name is never trusted (whoever
//! controls a reverse zone could otherwise name their address into the office), and an
//! empty or missing rhost is never trusted (sudo and su have none).

use serde::{Deserialize, Deserializer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 network such as `10.0.0.0/8` or `2001:db8::/32`. A bare address is a
/// network of one (`/32`, `/128`). Host bits must be zero, so a typo like `10.0.0.1/8`
/// is an error instead of silently trusting all of 10/8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkError {
    NotAnAddress(String),
    Prefix(String),
    HostBits { given: String, network: Network },
}

impl std::fmt::Display for NetworkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkError::NotAnAddress(s) => write!(
                f,
                "{s:?} is not an IP network (e.g. \"10.0.0.0/8\" or \"2001:db8::/32\"; \
                 host names are never trusted)"
            ),
            NetworkError::Prefix(s) => write!(
                f,
                "{s:?}: the prefix length must be 0 to 32 for IPv4, 0 to 128 for IPv6"
            ),
            NetworkError::HostBits { given, network } => write!(
                f,
                "{given:?} has bits set after the prefix; did you mean \"{network}\"?"
            ),
        }
    }
}

impl std::error::Error for NetworkError {}

impl Network {
    pub fn parse(text: &str) -> Result<Network, NetworkError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| NetworkError::NotAnAddress(text.to_owned()))?;
        let bits = bits_of(addr);
        let prefix = match prefix {
            None => bits,
            // Digits only: `u8::from_str` would also take "+8".
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u8>() {
                    Ok(n) if n <= bits => n,
                    _ => return Err(NetworkError::Prefix(text.to_owned())),
                }
            }
            Some(_) => return Err(NetworkError::Prefix(text.to_owned())),
        };
        let network = Network {
            addr: mask(addr, prefix),
            prefix,
        };
        if network.addr != addr {
            return Err(NetworkError::HostBits {
                given: text.to_owned(),
                network,
            });
        }
        Ok(network)
    }

    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`,
    /// what a dual-stack sshd reports for an IPv4 client) is its IPv4 address, and an IPv4
    /// address is also its mapped form, so either spelling matches either kind of network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.addr
            }
            (IpAddr::V6(_), IpAddr::V4(v4)) => {
                mask(IpAddr::V6(v4.to_ipv6_mapped()), self.prefix) == self.addr
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Network::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The address an `rhost` names, when it is an IP address literal and nothing else: no
/// host names, no zone index (`fe80::1%eth0`), no brackets, ports or spaces.
pub fn rhost_address(rhost: Option<&str>) -> Option<IpAddr> {
    rhost?.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The first of `networks` that holds `ip`.
pub fn trusted_by(networks: &[Network], ip: IpAddr) -> Option<&Network> {
    networks.iter().find(|n| n.contains(ip))
}

fn bits_of(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Network {
        Network::parse(s).unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(net("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(net("2001:db8::7").to_string(), "2001:db8::7/128");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(net("::/0").to_string(), "::/0");
    }

    #[test]
    fn refuses_what_is_not_a_network() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/08x",
            "2001:db8::/129",
            "10.0.0/8",
            "010.0.0.0/8",
            "office.example.com",
            "10.0.0.0/8 ",
            " 10.0.0.0/8",
            "fe80::%eth0/64",
            "[2001:db8::]/32",
            "10.0.0.0/8/8",
            "/8",
        ] {
            assert!(Network::parse(bad).is_err(), "{bad:?}");
        }
        let e = Network::parse("10.1.2.3/8").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"10.1.2.3/8\" has bits set after the prefix; did you mean \"10.0.0.0/8\"?"
        );
        let e = Network::parse("2001:db8::1/32").unwrap_err();
        assert!(e.to_string().contains("\"2001:db8::/32\""), "{e}");
    }

    #[test]
    fn inside_and_outside() {
        let v4 = net("10.0.0.0/8");
        assert!(v4.contains(ip("10.255.1.2")));
        assert!(!v4.contains(ip("11.0.0.1")));
        assert!(!v4.contains(ip("9.255.255.255")));
        let v6 = net("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v4.contains(ip("2001:db8::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let one = net("192.0.2.7");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_address() {
        // sshd on a dual-stack socket reports an IPv4 client this way.
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(!net("10.0.0.0/8").contains(ip("::ffff:11.1.2.3")));
        // A mapped network in the configuration matches both spellings.
        let mapped = net("::ffff:10.0.0.0/104");
        assert!(mapped.contains(ip("10.1.2.3")));
        assert!(mapped.contains(ip("::ffff:10.1.2.3")));
        assert!(!mapped.contains(ip("11.1.2.3")));
        // IPv4-compatible (deprecated, not mapped) addresses are plain IPv6.
        assert!(!net("10.0.0.0/8").contains(ip("::10.1.2.3")));
    }

    #[test]
    fn only_address_literals_are_rhost_addresses() {
        assert_eq!(rhost_address(Some("10.1.2.3")), Some(ip("10.1.2.3")));
        assert_eq!(rhost_address(Some("::ffff:10.1.2.3")), Some(ip("10.1.2.3")));
        assert_eq!(rhost_address(Some("2001:db8::1")), Some(ip("2001:db8::1")));
        for not in [
            None,
            Some(""),
            Some("localhost"),
            Some("10.1.2.3.example.com"),
            Some("host-10-1-2-3"),
            Some("10.1.2.3 "),
            Some("[2001:db8::1]"),
            Some("10.1.2.3:22"),
            Some("fe80::1%eth0"),
            Some("167837955"),
            Some("0x0a010203"),
            Some("010.001.002.003"),
        ] {
            assert_eq!(rhost_address(not), None, "{not:?}");
        }
    }

    #[test]
    fn first_trusting_network() {
        let nets = [net("192.0.2.0/24"), net("10.0.0.0/8")];
        assert_eq!(trusted_by(&nets, ip("10.9.9.9")), Some(&nets[1]));
        assert_eq!(trusted_by(&nets, ip("198.51.100.1")), None);
        assert_eq!(trusted_by(&[], ip("10.9.9.9")), None);
    }
}

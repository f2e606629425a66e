//! Where a platform may make this server send (`ReceivePolicy`): the `ReceiveAddr` of a
//! `/VIID/Subscribes` subscription or a `/VIID/Dispositions` disposition is a URL a
//! low-privilege platform login chooses, and the server POSTs to it from inside the
//! network (SSRF: cloud metadata at 169.254.169.254, admin ports on loopback).
//!
//! Checked twice: at subscribe time on the URL (scheme `http`/`https`; a host that is
//! an IP address, or `localhost`, judged as below) and at every connection on the
//! addresses the host resolves to then (a name that resolves, or later rebinds, to a
//! refused address is never connected to: only the permitted addresses are tried, in
//! order).
//!
//! An address is judged, IPv4-mapped and NAT64 (`64:ff9b::/96`) IPv6 as the IPv4 they
//! carry:
//! 1. in a network of `--viid-receive-deny`: refused (deny wins over allow);
//! 2. in a network of `--viid-receive-allow`: permitted;
//! 3. unspecified (`0.0.0.0/8`, `::`), loopback (`127.0.0.0/8`, `::1`), link-local
//!    (`169.254.0.0/16`, `fe80::/10`), multicast (`224.0.0.0/4`, `ff00::/8`) and
//!    reserved/broadcast (`240.0.0.0/4`, `255.255.255.255`): refused;
//! 4. anything else — private networks (RFC 1918, `fc00::/7`) included, where real
//!    lower and upper platforms run — permitted.
//!
//! Loopback is refused by default on a server listening beyond loopback: it is this
//! server's own host (its API, a cluster's PostgreSQL, NATS and SeaweedFS ports),
//! which callers from elsewhere could not reach; a platform on the same host is let in
//! with `--viid-receive-allow 127.0.0.1/32`. A server listening on a loopback address
//! (`--no-auth` always does) allows loopback as if so configured
//! ([`ReceivePolicy::serving_on`]): every caller is on its host already and reaches
//! its loopback ports itself, so sending there opens nothing new. Subscriptions made with an admin key
//! (`/v1/subscriptions`, `/v1/upstreams`, `/v1/remote-subscriptions`) are the
//! operator's own choice and not checked.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// The operator's networks to allow or deny receivers in (`--viid-receive-allow`,
/// `--viid-receive-deny`; on a cluster `[gat1400] receive_allow`, `receive_deny`);
/// empty: the defaults alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceivePolicy {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
    /// Where the operator sets them, as a refusal names it.
    pub named: Named,
}

/// Where a [`ReceivePolicy`]'s networks are set: `serve`'s flags, or a cluster's
/// `cluster.toml` (`[gat1400] receive_allow`, `receive_deny`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Named {
    #[default]
    Flags,
    ClusterToml,
}

impl Named {
    /// The settings' names: (allow, deny).
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Named::Flags => ("--viid-receive-allow", "--viid-receive-deny"),
            Named::ClusterToml => ("gat1400.receive_allow", "gat1400.receive_deny"),
        }
    }
}

/// Networks written `CIDR,CIDR,…` (a bare address is its own /32 or /128); why not,
/// naming the one that is not a network.
pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| format!("{s:?} is not a network like 10.0.0.0/8 or fd00::/8"))
        })
        .collect()
}

/// The IPv4 address an IPv6 one carries (IPv4-mapped `::ffff:a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`), else the address as it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// Why an address is refused by default (rule 3), if it is.
fn refused_by_default(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if o[0] == 0 {
                Some("an unspecified address (0.0.0.0/8)")
            } else if v4.is_loopback() {
                Some("a loopback address (this server's own host)")
            } else if v4.is_link_local() {
                Some("a link-local address (169.254.0.0/16: cloud metadata among them)")
            } else if v4.is_multicast() {
                Some("a multicast address")
            } else if o[0] >= 240 {
                Some("a reserved or broadcast address (240.0.0.0/4)")
            } else if o == [100, 100, 100, 200] {
                Some("a cloud metadata service's address (Alibaba Cloud's 100.100.100.200)")
            } else if o[..3] == [192, 0, 0] {
                Some("an IETF protocol assignment (192.0.0.0/24)")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_unspecified() {
                Some("the unspecified address (::)")
            } else if v6.is_loopback() {
                Some("a loopback address (this server's own host)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address (fe80::/10)")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if v6.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] {
                Some("a cloud metadata service's address (AWS's fd00:ec2::254)")
            } else {
                None
            }
        }
    }
}

impl ReceivePolicy {
    /// Allows loopback receivers (`127.0.0.0/8`, `::1`).
    pub fn allow_loopback(&mut self) {
        self.allow
            .extend(parse_networks("127.0.0.0/8,::1/128").expect("networks"));
    }

    /// This policy for a server listening on `listen`: loopback receivers allowed
    /// when it is a loopback address (IPv4-mapped included), whose callers are all on
    /// this host already; as configured otherwise (an unspecified address, `0.0.0.0`
    /// or `::`, listens beyond loopback).
    pub fn serving_on(&mut self, listen: IpAddr) {
        if canonical(listen).is_loopback() {
            self.allow_loopback();
        }
    }

    /// Why a receiver at `ip` is refused, or `None` when it is permitted.
    pub fn refusal(&self, ip: IpAddr) -> Option<String> {
        // Networks are matched against the address as written and as the IPv4 address
        // it carries, so a deny written in either form wins.
        let raw = ip;
        let ip = canonical(ip);
        let within = |n: &IpNet| n.contains(&ip) || n.contains(&raw);
        if let Some(n) = self.deny.iter().find(|n| within(n)) {
            let deny = self.named.names().1;
            return Some(format!("{raw} is in {n}, denied by {deny}"));
        }
        // An allow only as the address judged (an allow of a NAT64 prefix must not
        // let through the metadata address it carries).
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        refused_by_default(ip).map(|why| {
            let allow = self.named.names().0;
            format!("{ip} is {why}: refused unless {allow} names its network")
        })
    }

    /// Why a receiver URL is refused before any connection: not `http`/`https`, or a
    /// host that is a refused IP address or `localhost` (RFC 6761: always loopback).
    /// A name is judged by what it resolves to at each connection.
    pub fn url_refusal(&self, url: &str) -> Option<String> {
        let (origin, _) = match super::client::Origin::parse(url) {
            Ok(o) => o,
            Err(why) => return Some(why),
        };
        let host = origin.host.trim_start_matches('[').trim_end_matches(']');
        // A host a resolver reads as an address in another form (`2130706433`,
        // `0x7f.1`, `0177.0.0.1`: inet_aton's, which the WHATWG URL parser follows) is
        // judged as that address, not let through as a name.
        if let Ok(u) = url::Url::parse(url) {
            let ip = match u.host() {
                Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
                Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
                _ => None,
            };
            if let Some(why) = ip.and_then(|ip| self.refusal(ip)) {
                return Some(why);
            }
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => self.refusal(ip),
            Err(_) => {
                let name = host.trim_end_matches('.').to_ascii_lowercase();
                let local = name == "localhost" || name.ends_with(".localhost");
                local.then_some(()).and_then(|_| {
                    self.refusal(IpAddr::V4(Ipv4Addr::LOCALHOST))
                        .map(|why| format!("{host:?} is loopback (RFC 6761); {why}"))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn metadata_loopback_and_multicast_are_refused_private_networks_are_not() {
        let p = ReceivePolicy::default();
        for bad in [
            "169.254.169.254",
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "ff02::1",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "100.100.100.200",
            "fd00:ec2::254",
            "192.0.0.192",
        ] {
            assert!(p.refusal(ip(bad)).is_some(), "{bad}");
        }
        for good in [
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.20",
            "100.64.0.1",
            "8.8.8.8",
            "fd00::5",
            "2001:db8::1",
            "::ffff:192.168.1.1",
        ] {
            assert_eq!(p.refusal(ip(good)), None, "{good}");
        }
    }

    #[test]
    fn the_operator_allows_and_denies_networks_deny_winning() {
        let p = ReceivePolicy {
            allow: parse_networks("127.0.0.1, 169.254.10.0/24").unwrap(),
            deny: parse_networks("10.0.0.0/8,169.254.10.7").unwrap(),
            ..Default::default()
        };
        assert_eq!(p.refusal(ip("127.0.0.1")), None);
        assert!(p.refusal(ip("127.0.0.2")).is_some());
        assert_eq!(p.refusal(ip("169.254.10.6")), None);
        let why = p.refusal(ip("169.254.10.7")).unwrap();
        assert!(why.contains("--viid-receive-deny"), "{why}");
        assert!(p.refusal(ip("10.9.9.9")).is_some());
        assert!(p.refusal(ip("::ffff:10.9.9.9")).is_some());
        // A deny written in the NAT64 form wins over the IPv4 address it carries.
        let nat64 = ReceivePolicy {
            allow: Vec::new(),
            deny: parse_networks("64:ff9b::/96").unwrap(),
            ..Default::default()
        };
        assert!(nat64.refusal(ip("64:ff9b::a00:5")).is_some());
        assert_eq!(nat64.refusal(ip("10.0.0.5")), None);
        assert!(parse_networks("10.0.0.0/33").is_err());
        assert!(parse_networks("intranet").unwrap_err().contains("intranet"));
    }

    #[test]
    fn a_server_on_loopback_allows_loopback_receivers_one_beyond_it_does_not() {
        for listen in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            let mut p = ReceivePolicy::default();
            p.serving_on(ip(listen));
            for receiver in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
                assert_eq!(p.refusal(ip(receiver)), None, "{listen} → {receiver}");
            }
            assert_eq!(p.url_refusal("http://localhost:9000/x"), None, "{listen}");
            // Loopback only: metadata and the rest stay refused.
            assert!(p.refusal(ip("169.254.169.254")).is_some(), "{listen}");
            assert!(p.refusal(ip("0.0.0.0")).is_some(), "{listen}");
        }
        for listen in ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "fd00::1"] {
            let mut p = ReceivePolicy::default();
            p.serving_on(ip(listen));
            for receiver in ["127.0.0.1", "::1"] {
                let why = p.refusal(ip(receiver)).expect(listen);
                assert!(why.contains("--viid-receive-allow"), "{why}");
            }
            assert!(p.url_refusal("http://localhost:9000/x").is_some());
        }
        // A deny still wins over the loopback a loopback server allows.
        let mut p = ReceivePolicy {
            deny: parse_networks("127.0.0.0/8").unwrap(),
            ..Default::default()
        };
        p.serving_on(ip("127.0.0.1"));
        assert!(p.refusal(ip("127.0.0.1")).is_some());
    }

    #[test]
    fn urls_are_judged_by_scheme_and_literal_host() {
        let p = ReceivePolicy::default();
        for bad in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:8080/x",
            "http://[::ffff:7f00:1]/x",
            "http://localhost:9000/x",
            "http://LocalHost./x",
            "http://a.localhost/x",
            "ftp://10.0.0.1/x",
            "file:///etc/passwd",
            "gopher://10.0.0.1:70/",
            "http://2130706433/x",
            "http://0x7f000001:8080/x",
            "http://0177.0.0.1/x",
            "http://127.1/x",
            "http://0xa9.0xfe.0xa9.0xfe/latest/meta-data/",
        ] {
            assert!(p.url_refusal(bad).is_some(), "{bad}");
        }
        for good in [
            "http://192.168.1.20:8080/VIID/SubscribeNotifications",
            "https://platform.example/VIID",
            "http://10.0.0.1",
        ] {
            assert_eq!(p.url_refusal(good), None, "{good}");
        }
    }
}

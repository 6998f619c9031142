//! Keeping webhooks from reaching inside the network (server-side request forgery).
//!
//! A user chooses where this server sends requests. Without a check, `http://127.0.0.1:5432`
//! or `http://169.254.169.254/` (a cloud's metadata service) would let them probe and call
//! internal services. URLs are checked when registered, and every connection is checked again
//! where it is made: the resolver that reqwest uses drops forbidden addresses, so a name that
//! later resolves elsewhere (DNS rebinding) gets nowhere either, and redirects are not followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether requests may go to `ip`: only to public unicast addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // Reserved for future use, 240.0.0.0/4.
        || a >= 240
        // Benchmarking, 198.18.0.0/15.
        || (a == 198 && (b == 18 || b == 19))
        // IETF protocol assignments, 192.0.0.0/24 (NAT64 discovery, DS-Lite...).
        || (a == 192 && b == 0 && ip.octets()[2] == 0))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let [first, second, ..] = ip.segments();
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_unique_local() || ip.is_unicast_link_local()
        // Documentation, 2001:db8::/32.
        || (first == 0x2001 && second == 0x0db8)
        // Forms that carry an IPv4 address a gateway may translate to, internal ones included:
        // IPv4-compatible (::/96), IPv4-translated (::ffff:0:0/96), NAT64 (64:ff9b::/96 and the
        // local 64:ff9b:1::/48), 6to4 (2002::/16) and Teredo (2001::/32).
        || ip.segments()[..6] == [0; 6]
        || ip.segments()[..6] == [0, 0, 0, 0, 0xffff, 0]
        || (first == 0x64 && second == 0xff9b)
        || first == 0x2002
        || (first == 0x2001 && second == 0)
        // Site-local, fec0::/10 (deprecated, still routed inside some networks).
        || (first & 0xffc0) == 0xfec0
        // Discard-only, 100::/64.
        || (first == 0x100 && ip.segments()[1..4] == [0; 3]))
}

/// Why a webhook URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum UrlRefused {
    #[error("not a URL: {0}")]
    Malformed(String),
    #[error("webhook URLs must be http or https, not {0}")]
    Scheme(String),
    #[error("webhook URLs must not carry a user name or password")]
    Credentials,
    #[error("{host} cannot be resolved")]
    Unresolvable { host: String },
    /// Which internal address is not said: the answer must not map the network for a stranger.
    #[error("{host} resolves to a loopback, private or link-local address; webhooks go to public addresses only")]
    Private { host: String },
}

/// Checks a URL a user registers: its form, and (unless `allow_private`) that its host resolves
/// to public addresses only.
pub async fn check_url(text: &str, allow_private: bool) -> Result<reqwest::Url, UrlRefused> {
    let url = reqwest::Url::parse(text).map_err(|error| UrlRefused::Malformed(error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlRefused::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefused::Credentials);
    }
    let host = url.host_str().ok_or_else(|| UrlRefused::Malformed("no host".into()))?.to_owned();
    if allow_private {
        return Ok(url);
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port)).await.map_err(|_| UrlRefused::Unresolvable { host: host.clone() })?.collect(),
    };
    if addresses.is_empty() {
        return Err(UrlRefused::Unresolvable { host });
    }
    match addresses.iter().find(|address| !is_public(address.ip())) {
        Some(_) => Err(UrlRefused::Private { host }),
        None => Ok(url),
    }
}

/// The resolver webhook requests use: the system's, minus every forbidden address.
pub struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:0:7f00:1",
            "::ffff:0:a00:1",
            "2001:db8::1",
            "192.0.0.1",
            "192.0.0.170",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::1",
            "2001:0:4136:e378::1",
            "fec0::1",
            "100::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_to_internal_hosts_are_refused_unless_allowed() {
        for url in ["http://127.0.0.1:8080/hook", "http://[::1]/", "http://169.254.169.254/latest/meta-data", "http://localhost:9/x"] {
            assert!(matches!(check_url(url, false).await, Err(UrlRefused::Private { .. })), "{url}");
            assert!(check_url(url, true).await.is_ok(), "{url} when allowed");
        }
        assert!(matches!(check_url("ftp://example.com/", false).await, Err(UrlRefused::Scheme(_))));
        assert!(matches!(check_url("https://user:pw@example.com/", false).await, Err(UrlRefused::Credentials)));
        assert!(matches!(check_url("not a url", false).await, Err(UrlRefused::Malformed(_))));
        assert!(check_url("https://93.184.216.34/hook", false).await.is_ok());
        let refusal = check_url("http://localhost:9/x", false).await.unwrap_err().to_string();
        assert!(!refusal.contains("127.0.0.1") && !refusal.contains("::1"), "the refusal names no internal address: {refusal}");
    }
}

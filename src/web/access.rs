//! Who may use the page: a pure decision on the client's address, the config and the
//! `Authorization` header, tested with addresses the tests cannot connect from.

use std::net::{IpAddr, Ipv4Addr};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

/// The Home Assistant Supervisor's ingress proxy: the only client under `web.ingress`.
pub const INGRESS_PROXY: IpAddr = IpAddr::V4(Ipv4Addr::new(172, 30, 32, 2));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Answer 401 with a Basic challenge: the password opens the page.
    AskPassword,
    /// Answer 403: nothing opens the page from there.
    Refuse,
}

/// Who is let in:
/// - under `web.ingress`, the Supervisor's proxy;
/// - with `web.password`, anyone else who gives it (HTTP Basic, any user name), loopback
///   clients too: a TLS proxy on the same host makes every client look like loopback;
/// - without a password, loopback clients whose `Host` names this machine (`localhost`, a
///   loopback address): a page elsewhere whose name was rebound to 127.0.0.1 must not drive
///   the page through the user's browser.
pub fn decide(
    peer: IpAddr,
    ingress: bool,
    password: Option<&SecretString>,
    authorization: Option<&str>,
    host: Option<&str>,
) -> Verdict {
    let peer = peer.to_canonical();
    if ingress && peer == INGRESS_PROXY {
        return Verdict::Allow;
    }
    if let Some(password) = password {
        return match authorization.and_then(basic_password) {
            Some(given) if same(given.as_bytes(), password.expose_secret().as_bytes()) => {
                Verdict::Allow
            }
            _ => Verdict::AskPassword,
        };
    }
    if !ingress && peer.is_loopback() && host.is_none_or(names_this_machine) {
        return Verdict::Allow;
    }
    Verdict::Refuse
}

/// Whether a `Host` header (with or without a port) is `localhost` or a loopback address.
fn names_this_machine(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1]:8099
        rest.split_once(']').map_or("", |(name, _)| name)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The password of an `Authorization: Basic` header.
fn basic_password(header: &str) -> Option<String> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string())
}

/// Equality whose time does not depend on where the first difference is.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `X-Ingress-Path` prefix when it is to be honoured and looks like a path: links and
/// redirects start with it. Anything else is ignored (the page then uses relative links).
pub fn ingress_prefix(ingress: bool, header: Option<&str>) -> String {
    let Some(value) = header.filter(|_| ingress).map(str::trim) else {
        return String::new();
    };
    let safe = value.starts_with('/')
        && !value.contains("//")
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c));
    if safe {
        value.trim_end_matches('/').to_string()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    #[test]
    fn loopback_by_default_the_proxy_under_ingress_others_with_the_password() {
        let lan: IpAddr = "192.168.1.20".parse().unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let local6: IpAddr = "::1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let pw = SecretString::from("s3cret".to_string());
        let host = Some("127.0.0.1:8099");
        for peer in [local, local6, mapped] {
            assert_eq!(
                decide(peer, false, None, None, host),
                Verdict::Allow,
                "{peer}"
            );
        }
        assert_eq!(decide(lan, false, None, None, host), Verdict::Refuse);
        assert_eq!(
            decide(lan, false, None, Some(&basic("u:s3cret")), host),
            Verdict::Refuse
        );
        // Under ingress: the proxy only; loopback and the LAN are not trusted.
        assert_eq!(
            decide(INGRESS_PROXY, true, None, None, None),
            Verdict::Allow
        );
        assert_eq!(decide(local, true, None, None, host), Verdict::Refuse);
        assert_eq!(decide(lan, true, None, None, host), Verdict::Refuse);
        assert_eq!(
            decide(INGRESS_PROXY, false, None, None, host),
            Verdict::Refuse
        );
        // The password lets anyone in (loopback too: a proxy on this host is loopback), and
        // nothing else does.
        for (ingress, peer) in [(false, lan), (true, lan), (true, local), (false, local)] {
            let ask = |auth: Option<&str>| decide(peer, ingress, Some(&pw), auth, host);
            assert_eq!(ask(None), Verdict::AskPassword);
            assert_eq!(ask(Some(&basic("anyone:wrong"))), Verdict::AskPassword);
            assert_eq!(ask(Some(&basic("anyone:s3cret"))), Verdict::Allow);
            assert_eq!(ask(Some("Bearer s3cret")), Verdict::AskPassword);
            assert_eq!(ask(Some("Basic !!!")), Verdict::AskPassword);
        }
    }

    /// Issue 23 review: a page whose name was rebound to 127.0.0.1 reaches a loopback
    /// listener from the user's browser; its `Host` gives it away.
    #[test]
    fn a_loopback_client_naming_another_host_is_refused() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        for host in [
            "localhost",
            "LOCALHOST:8099",
            "127.0.0.1",
            "127.0.0.2:80",
            "[::1]:8099",
            "[::ffff:127.0.0.1]",
        ] {
            assert_eq!(
                decide(local, false, None, None, Some(host)),
                Verdict::Allow,
                "{host}"
            );
        }
        for host in [
            "evil.example:8099",
            "evil.example",
            "localhost.evil.example",
            "192.168.1.2:8099",
            "[::1",
            "",
        ] {
            assert_eq!(
                decide(local, false, None, None, Some(host)),
                Verdict::Refuse,
                "{host}"
            );
        }
    }

    #[test]
    fn the_ingress_prefix_is_taken_only_under_ingress_and_only_when_it_is_a_path() {
        let p = "/api/hassio_ingress/AbC-12_x/";
        assert_eq!(
            ingress_prefix(true, Some(p)),
            "/api/hassio_ingress/AbC-12_x"
        );
        assert_eq!(ingress_prefix(false, Some(p)), "");
        assert_eq!(ingress_prefix(true, None), "");
        for bad in ["\"><script>", "//evil.example", "https://x", "/a b", "/a?b"] {
            assert_eq!(ingress_prefix(true, Some(bad)), "", "{bad}");
        }
    }
}

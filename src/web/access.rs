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

/// Loopback clients (or, under ingress, only the Supervisor's proxy) are let in; anyone
/// else only with the password (HTTP Basic, any user name).
pub fn decide(
    peer: IpAddr,
    ingress: bool,
    password: Option<&SecretString>,
    authorization: Option<&str>,
) -> Verdict {
    let peer = peer.to_canonical();
    let trusted = if ingress {
        peer == INGRESS_PROXY
    } else {
        peer.is_loopback()
    };
    if trusted {
        return Verdict::Allow;
    }
    let Some(password) = password else {
        return Verdict::Refuse;
    };
    match authorization.and_then(basic_password) {
        Some(given) if same(given.as_bytes(), password.expose_secret().as_bytes()) => {
            Verdict::Allow
        }
        _ => Verdict::AskPassword,
    }
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
        for peer in [local, local6, mapped] {
            assert_eq!(decide(peer, false, None, None), Verdict::Allow, "{peer}");
        }
        assert_eq!(decide(lan, false, None, None), Verdict::Refuse);
        assert_eq!(
            decide(lan, false, None, Some(&basic("u:s3cret"))),
            Verdict::Refuse
        );
        // Under ingress: the proxy only; loopback and the LAN are not trusted.
        assert_eq!(decide(INGRESS_PROXY, true, None, None), Verdict::Allow);
        assert_eq!(decide(local, true, None, None), Verdict::Refuse);
        assert_eq!(decide(lan, true, None, None), Verdict::Refuse);
        assert_eq!(decide(INGRESS_PROXY, false, None, None), Verdict::Refuse);
        // The password lets anyone in, and nothing else does.
        for (ingress, peer) in [(false, lan), (true, lan), (true, local)] {
            assert_eq!(decide(peer, ingress, Some(&pw), None), Verdict::AskPassword);
            assert_eq!(
                decide(peer, ingress, Some(&pw), Some(&basic("anyone:wrong"))),
                Verdict::AskPassword
            );
            assert_eq!(
                decide(peer, ingress, Some(&pw), Some(&basic("anyone:s3cret"))),
                Verdict::Allow
            );
            assert_eq!(
                decide(peer, ingress, Some(&pw), Some("Bearer s3cret")),
                Verdict::AskPassword
            );
            assert_eq!(
                decide(peer, ingress, Some(&pw), Some("Basic !!!")),
                Verdict::AskPassword
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

//! Browser sessions: a random id in a cookie (HttpOnly, SameSite=Strict), a CSRF token per
//! session that every form carries, the login waiting for its two-factor code, and the
//! message to show once after a form was posted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::auth::login::PendingLogin;

pub const COOKIE: &str = "pcm_session";
/// At most this many sessions are kept (the oldest goes first): the page has few users.
const MAX_SESSIONS: usize = 64;
/// A login waiting longer than this for its code is dropped (the account server's form
/// expires too).
pub const CODE_WAIT: Duration = Duration::from_secs(600);

/// What to show once, after a form.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub error: bool,
    pub text: String,
}

#[derive(Default)]
pub struct Session {
    pub csrf: String,
    /// The email and the login waiting for the code, and since when.
    pub pending: Option<(String, PendingLogin, Instant)>,
    pub notice: Option<Notice>,
    last_used: Option<Instant>,
}

#[derive(Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
}

pub fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    /// The session of this cookie, or a new one (its id is returned to be set as cookie).
    pub fn open(&mut self, id: Option<&str>, now: Instant) -> (String, &mut Session) {
        let id = match id.filter(|id| self.by_id.contains_key(*id)) {
            Some(id) => id.to_string(),
            None => {
                if self.by_id.len() >= MAX_SESSIONS
                    && let Some(oldest) = self
                        .by_id
                        .iter()
                        .min_by_key(|(_, s)| s.last_used)
                        .map(|(id, _)| id.clone())
                {
                    self.by_id.remove(&oldest);
                }
                let id = random_token();
                self.by_id.insert(
                    id.clone(),
                    Session {
                        csrf: random_token(),
                        ..Default::default()
                    },
                );
                id
            }
        };
        let session = self.by_id.get_mut(&id).expect("inserted above");
        session.touch(now);
        (id, session)
    }

    /// The session of a form post whose CSRF token matches; `None` refuses the post.
    pub fn checked(&mut self, id: Option<&str>, csrf: &str, now: Instant) -> Option<&mut Session> {
        let session = self.by_id.get_mut(id?)?;
        if csrf.is_empty() || !super::access::same(session.csrf.as_bytes(), csrf.as_bytes()) {
            return None;
        }
        session.touch(now);
        Some(session)
    }
}

impl Session {
    /// Used now; a login that waited longer than [`CODE_WAIT`] for its code is dropped (also
    /// when the code comes from a page left open).
    fn touch(&mut self, now: Instant) {
        self.last_used = Some(now);
        if self
            .pending
            .as_ref()
            .is_some_and(|(_, _, since)| now.duration_since(*since) > CODE_WAIT)
        {
            self.pending = None;
        }
    }
}

/// The session id in a `Cookie` header.
pub fn cookie_id(header: Option<&str>) -> Option<&str> {
    header?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_needs_the_session_and_its_own_token() {
        let mut sessions = Sessions::default();
        let now = Instant::now();
        let (id, session) = sessions.open(None, now);
        let csrf = session.csrf.clone();
        assert_eq!(sessions.open(Some(&id), now).0, id);
        assert!(sessions.checked(Some(&id), &csrf, now).is_some());
        assert!(sessions.checked(Some(&id), "", now).is_none());
        assert!(sessions.checked(Some(&id), "forged", now).is_none());
        assert!(sessions.checked(None, &csrf, now).is_none());
        let (other, _) = sessions.open(None, now);
        assert_ne!(other, id);
        assert!(sessions.checked(Some(&other), &csrf, now).is_none());
        assert_eq!(
            cookie_id(Some(&format!("a=b; {COOKIE}={id}; c=d"))),
            Some(id.as_str())
        );
        assert_eq!(cookie_id(Some("a=b")), None);
    }

    #[test]
    fn sessions_are_bounded() {
        let mut sessions = Sessions::default();
        let now = Instant::now();
        for _ in 0..MAX_SESSIONS * 3 {
            sessions.open(None, now);
        }
        assert_eq!(sessions.by_id.len(), MAX_SESSIONS);
    }
}

//! Scripting the account server (`/o/authorize/`, `/o/token/`, `/login/`, `/login/2fa/`).

use std::time::Duration;

use super::Simulator;
use crate::account::AccountStats;
use crate::faults::Fault;
use crate::world::real_now_us;

impl Simulator {
    /// Adds a user who can log in with `email` (case-insensitive) and `password`. With
    /// `totp`, the login asks for a second factor and `totp` is the one code it accepts.
    /// Adding a known email again replaces its password and code and keeps its tokens.
    pub fn add_user(&self, email: &str, password: &str, totp: Option<&str>) {
        self.account().add_user(email, password, totp);
    }

    /// A new refresh token for the user, as if they had logged in in a browser. Panics on an
    /// unknown email.
    #[track_caller]
    pub fn issue_refresh_token(&self, email: &str) -> String {
        match self.account().issue_refresh_token(email, real_now_us()) {
            Some(token) => token,
            None => panic!("simulator: no user with email {email}"),
        }
    }

    /// Whether `token` would be accepted by `/o/token/` now (issued, not yet used or revoked,
    /// not expired).
    pub fn is_refresh_token_valid(&self, token: &str) -> bool {
        self.account().is_refresh_token_valid(token, real_now_us())
    }

    /// The lifetime of access tokens issued from now on
    /// ([`DEFAULT_ACCESS_TTL`](crate::DEFAULT_ACCESS_TTL) at first).
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.account().access_ttl = ttl;
    }

    /// Revokes every refresh token, as "log out everywhere" does. Access tokens already
    /// issued stay valid until they expire: Connect checks their signature, not the account
    /// server.
    pub fn revoke_refresh_tokens(&self) {
        self.account().revoke_refresh_tokens();
    }

    /// Makes every access token issued so far expired now (their `exp` claims then lie).
    pub fn expire_access_tokens(&self) {
        self.account().expire_access_tokens(real_now_us());
    }

    /// A misbehaviour for every request under `/o/` and `/login/` (Connect's `/app/` is not
    /// affected). Error statuses come with HTML pages, as from the account server's proxy.
    pub fn set_account_fault(&self, fault: Option<Fault>) {
        self.account().fault = fault;
    }

    /// How long `/o/token/` waits before handling each request, so that tests can see
    /// whether a client ever has two token requests in progress at once.
    pub fn set_token_endpoint_delay(&self, delay: Duration) {
        self.account().token_delay = delay;
    }

    /// What the account server has seen so far.
    pub fn account_stats(&self) -> AccountStats {
        self.account().stats.clone()
    }
}

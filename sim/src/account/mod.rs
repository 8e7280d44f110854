//! The simulated Prusa Account (`account.prusa3d.com`, Django + django-oauth-toolkit): users,
//! browser sessions, OAuth2 authorization codes with PKCE (S256) and rotating refresh tokens.
//!
//! `state.rs` holds the state and every transition; times are passed in (Unix microseconds)
//! so the rules can be tested without waiting. `oauth.rs` reads the OAuth2 requests and
//! writes the answers, `http.rs` is the HTTP edge (`/o/*`, `/login/*`), `pages.rs` the HTML
//! it serves. Connect's `/app` accepts the access tokens issued here while they are unexpired
//! (see `http::authenticate` one level up).

pub(crate) mod http;
mod oauth;
mod pages;
mod state;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub(crate) use oauth::{AuthorizeRequest, PasswordStep, TokenRequest, TotpStep};
pub use state::AccountStats;
pub(crate) use state::{Accounts, Session, random_token};

/// The Connect web app's public OAuth2 client id, the only client the account server knows.
pub const CLIENT_ID: &str = "MRHTlZhZqkNrrQ6FUPtjyusAz8nc59ErHXP8XkS4";
/// The only redirect URI registered for [`CLIENT_ID`].
pub const REDIRECT_URI: &str = "https://connect.prusa3d.com/login/auth-callback";
/// How long access tokens live unless [`super::Simulator::set_access_ttl`] says otherwise.
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(7200);
/// How long refresh tokens live.
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long an authorization code can be exchanged.
pub const CODE_TTL: Duration = Duration::from_secs(60);
pub(crate) const SCOPE: &str = "basic_info";
/// The account id `/api/v1/me` gives for a token not issued here that Connect accepts (a
/// test's fixed `connect.access_token`): the live channel wants it as the username.
pub const STATIC_TOKEN_ACCOUNT_ID: u64 = 2_000_001;

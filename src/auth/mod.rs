//! Prusa Account authentication: refresh tokens that rotate, stored atomically, refreshed by
//! one task at a time; and the PKCE login of `prusa-connect-mqtt login` ([`login`]).
//!
//! Connect's access tokens live two hours. With a refresh token the gateway renews them
//! before they expire and once after any 401. The account server rotates refresh tokens on
//! every use, so the new one is written to `state.dir/auth.json` (temporary file, fsync,
//! rename, mode 0600) before the new access token is handed out, and a single async mutex
//! makes sure two refreshes never run at once.

mod error;
pub mod form;
pub mod login;
mod refresher;
mod token_endpoint;
mod token_store;

pub use error::{AuthError, LOGIN_ACTION, WEB_LOGIN_ACTION};
pub use login::{pkce_challenge, pkce_pair};
pub use refresher::{Refresher, jwt_expiry};
pub use token_endpoint::{CLIENT_ID, REDIRECT_URI, TokenResponse};
pub use token_store::{
    AUTH_FILE, StoredAuth, TokenStore, choose_refresh_token, sha256_hex, store_login,
};

#[cfg(test)]
mod tests;

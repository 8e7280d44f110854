//! `state.dir/auth.json`: the refresh token to use next, written atomically, and the choice
//! between it and the configured token at start.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::login;

/// The file in `state.dir` that holds the current refresh token.
pub const AUTH_FILE: &str = "auth.json";
/// Longer token lifetimes (from `expires_in`, the JWT's `exp` or `auth.json`) are taken as
/// this: the clock arithmetic must not overflow on whatever the account server sends.
pub(super) const MAX_LIFETIME: Duration = Duration::from_secs(1_000_000_000);

/// `state.dir/auth.json`. The refresh token is the one to use next; `configured_sha256` is
/// the hash of the configured refresh token this file superseded, so a restart can tell an
/// old configured token (already rotated away) from a new one the user pasted since.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredAuth {
    pub refresh_token: String,
    #[serde(default)]
    pub access_token: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub access_expires_at: Option<u64>,
    /// Unix seconds.
    pub obtained_at: u64,
    #[serde(default)]
    pub configured_sha256: Option<String>,
    /// `login` or `refresh`.
    #[serde(default)]
    pub source: String,
    /// The email of the login (when the web page or `login` knew it), for the web page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl std::fmt::Debug for StoredAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAuth")
            .field("obtained_at", &self.obtained_at)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Reads and writes `auth.json` in the state directory.
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    pub fn new(state_dir: &Path) -> TokenStore {
        TokenStore {
            path: state_dir.join(AUTH_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `None` when there is no file; an unreadable file is reported and ignored.
    pub fn load(&self) -> Option<StoredAuth> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", self.path.display());
                return None;
            }
        };
        match serde_json::from_slice::<StoredAuth>(&bytes) {
            Ok(s) if !s.refresh_token.trim().is_empty() => Some(s),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!("{} is not readable ({e}); ignoring it", self.path.display());
                None
            }
        }
    }

    pub fn save(&self, stored: &StoredAuth) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let bytes = serde_json::to_vec_pretty(stored)?;
        crate::store::write_atomically(&self.path, &bytes)
    }

    /// Deletes the file (log-out); a missing file is fine.
    pub fn remove(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(anyhow::Error::new(e).context(format!("cannot delete {}", self.path.display())))
            }
            _ => Ok(()),
        }
    }

    /// [`TokenStore::load`] for async code: the file is read on a thread for blocking work.
    pub async fn load_async(&self) -> Option<StoredAuth> {
        let store = self.clone();
        crate::store::off_runtime(move || store.load())
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("cannot read {}: {e:#}", self.path.display());
                None
            })
    }

    /// [`TokenStore::save`] for async code: the write, its fsync and the rename run on a
    /// thread for blocking work; it has happened when this returns.
    pub async fn save_async(&self, stored: &StoredAuth) -> anyhow::Result<()> {
        let (store, stored) = (self.clone(), stored.clone());
        crate::store::off_runtime(move || store.save(&stored)).await?
    }
}

/// Stores what a login obtained as `state.dir/auth.json` (the CLI `login` and the web page):
/// the running gateway takes it up at its next poll. `configured` is the config's
/// `connect.refresh_token`, which this file supersedes.
pub fn store_login(
    store: &TokenStore,
    tokens: &login::LoginTokens,
    configured: Option<&SecretString>,
    account: Option<&str>,
) -> anyhow::Result<()> {
    let now = unix_now();
    let access_expires_at = tokens
        .expires_in
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| now.saturating_add(s.min(MAX_LIFETIME.as_secs_f64()) as u64));
    store.save(&StoredAuth {
        refresh_token: tokens.refresh_token.expose_secret().to_string(),
        access_token: Some(tokens.access_token.expose_secret().to_string()),
        access_expires_at,
        obtained_at: now,
        configured_sha256: configured.map(|t| sha256_hex(t.expose_secret().trim())),
        source: "login".into(),
        account: account.map(str::to_string),
    })
}

/// Picks the refresh token to start with: the stored one unless the configured one is new
/// (neither the stored token nor the one the stored file superseded).
pub fn choose_refresh_token(
    configured: Option<&str>,
    stored: Option<&StoredAuth>,
) -> Option<(String, bool)> {
    match (configured.filter(|c| !c.is_empty()), stored) {
        (None, None) => None,
        (None, Some(s)) => Some((s.refresh_token.clone(), true)),
        (Some(c), None) => Some((c.to_string(), false)),
        (Some(c), Some(s)) => {
            let known = s.refresh_token == c
                || s.configured_sha256.as_deref() == Some(sha256_hex(c).as_str());
            if known {
                Some((s.refresh_token.clone(), true))
            } else {
                Some((c.to_string(), false))
            }
        }
    }
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

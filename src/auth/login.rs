//! `prusa-connect-mqtt login`: the OAuth2 authorization-code flow with PKCE (S256) against
//! the account server, completed by filling in its HTML login form (and the 2FA form when
//! the account has one), as the facts file describes. The password only ever lives in a
//! `SecretString` and in the one form post to the account server.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{StatusCode, Url, header, redirect};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::form::{self, Form};
use super::token_endpoint::{
    CLIENT_ID, REDIRECT_URI, TokenEndpointError, TokenResponse, token_request,
};

/// Why a login failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong email or password{}", .0.as_ref().map(|m| format!(" (the account server says: {m})")).unwrap_or_default())]
    WrongCredentials(Option<String>),
    #[error(
        "wrong two-factor code{}; codes change every 30 seconds: try again with the current one",
        .0.as_ref().map(|m| format!(" (the account server says: {m})")).unwrap_or_default()
    )]
    WrongCode(Option<String>),
    #[error("the account asks for a two-factor code, but none was given")]
    CodeNeeded,
    #[error(
        "cannot reach the account server at {url} ({detail}); check connect.auth_url and the network"
    )]
    Unreachable { url: String, detail: String },
    #[error(
        "the account server answered in a way this version does not understand ({0}); \
         log in on the web to check the account, and report this if it persists"
    )]
    Unexpected(String),
    #[error("the account server refused to issue tokens ({0})")]
    Refused(String),
}

/// What `login` obtained (`Debug` shows no secret).
#[derive(Debug, Clone)]
pub struct LoginTokens {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub expires_in: Option<f64>,
}

/// Runs the whole flow. `ask_code` is called only when the account asks for a 2FA code.
pub async fn login(
    auth_url: &str,
    email: &str,
    password: &SecretString,
    mut ask_code: impl FnMut() -> anyhow::Result<Option<SecretString>>,
    timeout: Duration,
) -> Result<LoginTokens, LoginError> {
    match start(auth_url, email, password, timeout).await? {
        LoginStep::Done(tokens) => Ok(tokens),
        LoginStep::NeedsCode(pending) => {
            let code = ask_code()
                .map_err(|e| LoginError::Unexpected(format!("{e:#}")))?
                .ok_or(LoginError::CodeNeeded)?;
            pending.submit_code(&code).await
        }
    }
}

/// Where a login stands after the email and password were sent.
#[derive(Debug)]
pub enum LoginStep {
    Done(LoginTokens),
    /// The account asks for a two-factor code: [`PendingLogin::submit_code`] goes on.
    NeedsCode(PendingLogin),
}

/// A login waiting for its two-factor code (a web form in two steps keeps it between
/// requests). It holds the account server's session cookies and the PKCE verifier, never
/// the password.
pub struct PendingLogin {
    flow: Box<Flow>,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin").finish_non_exhaustive()
    }
}

impl PendingLogin {
    /// Sends the code; a wrong one ends the login ([`LoginError::WrongCode`]).
    pub async fn submit_code(self, code: &SecretString) -> Result<LoginTokens, LoginError> {
        match self.flow.advance(None, Some(code)).await? {
            LoginStep::Done(tokens) => Ok(tokens),
            // `advance` with a code never stops for one again (a second code form is a
            // wrong code).
            LoginStep::NeedsCode(_) => Err(LoginError::CodeNeeded),
        }
    }
}

/// Opens the account server's login page and sends the email and password.
pub async fn start(
    auth_url: &str,
    email: &str,
    password: &SecretString,
    timeout: Duration,
) -> Result<LoginStep, LoginError> {
    let base = Url::parse(auth_url)
        .map_err(|e| LoginError::Unexpected(format!("connect.auth_url is not a URL: {e}")))?;
    let unreachable = unreachable(auth_url);
    let http = client(&base, timeout).map_err(&unreachable)?;
    let (verifier, challenge) = pkce_pair();
    let state = pkce_pair().0;
    let mut authorize = base
        .join("/o/authorize/")
        .map_err(|e| LoginError::Unexpected(e.to_string()))?;
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", &state);

    let page = http.get(authorize).send().await.map_err(&unreachable)?;
    let page = Page::read(page).await.map_err(&unreachable)?;
    let flow = Flow {
        http,
        base,
        auth_url: auth_url.to_string(),
        state,
        verifier,
        page,
        credentials_sent: false,
        code_sent: false,
    };
    flow.advance(Some((email, password)), None).await
}

fn unreachable(auth_url: &str) -> impl Fn(reqwest::Error) -> LoginError + '_ {
    move |e: reqwest::Error| LoginError::Unreachable {
        url: auth_url.to_string(),
        detail: crate::http::describe_reqwest(&e),
    }
}

/// The account server's pages, walked form by form until the redirect to Connect.
struct Flow {
    http: reqwest::Client,
    base: Url,
    auth_url: String,
    state: String,
    verifier: String,
    page: Page,
    credentials_sent: bool,
    code_sent: bool,
}

impl Flow {
    /// Fills in the forms the account server shows; stops for a code when none is given.
    async fn advance(
        mut self,
        credentials: Option<(&str, &SecretString)>,
        mut code: Option<&SecretString>,
    ) -> Result<LoginStep, LoginError> {
        let auth_url = self.auth_url.clone();
        let unreachable = unreachable(&auth_url);
        let code = loop {
            if let Some(code) = self.page.code(&self.state)? {
                break code;
            }
            let forms = form::forms(&self.page.body);
            let error =
                form::text_of_class(&self.page.body, &["errorlist", "error", "alert-danger"]);
            if let Some(form) = forms.iter().find(|f| f.has_input_of_kind("password")) {
                let Some((email, password)) = credentials.filter(|_| !self.credentials_sent) else {
                    return Err(LoginError::WrongCredentials(error));
                };
                self.credentials_sent = true;
                let user_field = form
                    .inputs
                    .iter()
                    .find(|i| i.kind == "email")
                    .or_else(|| form.input_named(&["email", "username", "login"]))
                    .map(|i| i.name.clone())
                    .ok_or_else(|| {
                        LoginError::Unexpected("the login form has no email field".into())
                    })?;
                let password_field = form
                    .inputs
                    .iter()
                    .find(|i| i.kind == "password")
                    .map(|i| i.name.clone())
                    .unwrap_or_else(|| "password".into());
                let fields = fill(
                    form,
                    &[
                        (user_field.as_str(), email),
                        (password_field.as_str(), password.expose_secret()),
                    ],
                );
                self.page = submit(&self.http, &self.page, form, fields)
                    .await
                    .map_err(&unreachable)?;
                continue;
            }
            if let Some(form) = forms.iter().find(|f| is_code_form(f)) {
                if self.code_sent {
                    return Err(LoginError::WrongCode(error));
                }
                let Some(code) = code.take() else {
                    return Ok(LoginStep::NeedsCode(PendingLogin {
                        flow: Box::new(self),
                    }));
                };
                self.code_sent = true;
                let field = code_field(form).unwrap_or("token").to_string();
                let fields = fill(form, &[(field.as_str(), code.expose_secret().trim())]);
                self.page = submit(&self.http, &self.page, form, fields)
                    .await
                    .map_err(&unreachable)?;
                continue;
            }
            return Err(LoginError::Unexpected(format!(
                "HTTP {} at {} without a login form{}",
                self.page.status.as_u16(),
                self.page.url.path(),
                error.map(|e| format!(": {e}")).unwrap_or_default()
            )));
        };
        self.exchange(&code).await.map(LoginStep::Done)
    }

    /// Trades the authorization code for tokens.
    async fn exchange(&self, code: &str) -> Result<LoginTokens, LoginError> {
        let auth_url = self.auth_url.as_str();
        let token_url = self
            .base
            .join("/o/token/")
            .map_err(|e| LoginError::Unexpected(e.to_string()))?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", CLIENT_ID),
            ("code_verifier", self.verifier.as_str()),
        ];
        let tokens: TokenResponse =
            token_request(&self.http, &token_url, &form)
                .await
                .map_err(|e| match e {
                    TokenEndpointError::Unreachable(detail) => LoginError::Unreachable {
                        url: auth_url.to_string(),
                        detail,
                    },
                    TokenEndpointError::Unavailable { detail, .. } => LoginError::Unreachable {
                        url: auth_url.to_string(),
                        detail,
                    },
                    TokenEndpointError::Refused { detail, .. } => LoginError::Refused(detail),
                })?;
        let refresh_token = tokens
            .refresh_token
            .ok_or_else(|| LoginError::Refused("the token response has no refresh token".into()))?;
        Ok(LoginTokens {
            access_token: tokens.access_token,
            refresh_token,
            expires_in: tokens.expires_in,
        })
    }
}

/// Follows redirects on the account server only; stops at the app's callback (which must
/// never be fetched: it carries the code) and at any other host.
fn client(base: &Url, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    let host = base.host_str().unwrap_or_default().to_string();
    let port = base.port_or_known_default();
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("prusa-connect-mqtt/", env!("CARGO_PKG_VERSION")))
        .redirect(redirect::Policy::custom(move |attempt| {
            let url = attempt.url();
            let same_server =
                url.host_str() == Some(host.as_str()) && url.port_or_known_default() == port;
            if attempt.previous().len() >= 10 || !same_server {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
}

struct Page {
    status: StatusCode,
    url: Url,
    location: Option<String>,
    body: String,
}

impl Page {
    async fn read(resp: reqwest::Response) -> reqwest::Result<Page> {
        let status = resp.status();
        let url = resp.url().clone();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await?;
        Ok(Page {
            status,
            url,
            location,
            body,
        })
    }

    /// The authorization code, when this is the redirect to the app's callback.
    fn code(&self, state: &str) -> Result<Option<String>, LoginError> {
        let Some(location) = &self.location else {
            return Ok(None);
        };
        let Ok(target) = self.url.join(location) else {
            return Ok(None);
        };
        if !target.as_str().starts_with(REDIRECT_URI) {
            if self.status.is_redirection() {
                return Err(LoginError::Unexpected(format!(
                    "redirected to {} instead of back to Connect",
                    target.origin().ascii_serialization()
                )));
            }
            return Ok(None);
        }
        let mut code = None;
        let mut returned_state = None;
        let mut error = None;
        for (k, v) in target.query_pairs() {
            match k.as_ref() {
                "code" => code = Some(v.into_owned()),
                "state" => returned_state = Some(v.into_owned()),
                "error" => error = Some(v.into_owned()),
                _ => {}
            }
        }
        if let Some(error) = error {
            return Err(LoginError::Refused(error));
        }
        if returned_state.as_deref() != Some(state) {
            return Err(LoginError::Unexpected(
                "the account server returned a different state parameter".into(),
            ));
        }
        code.map(Some)
            .ok_or_else(|| LoginError::Unexpected("the redirect carries no code".into()))
    }
}

fn is_code_form(form: &Form) -> bool {
    code_field(form).is_some()
}

fn code_field(form: &Form) -> Option<&str> {
    form.input_named(&["token", "code", "otp", "otp_token", "totp"])
        .filter(|i| !matches!(i.kind.as_str(), "hidden" | "submit" | "password"))
        .map(|i| i.name.as_str())
}

/// The form's own fields (hidden ones keep their values) with `values` filled in.
fn fill(form: &Form, values: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = form
        .inputs
        .iter()
        .filter(|i| !matches!(i.kind.as_str(), "submit" | "button" | "checkbox" | "radio"))
        .map(|i| {
            let value = values
                .iter()
                .find(|(n, _)| *n == i.name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| i.value.clone());
            (i.name.clone(), value)
        })
        .collect();
    for (name, value) in values {
        if !fields.iter().any(|(n, _)| n == name) {
            fields.push((name.to_string(), value.to_string()));
        }
    }
    fields
}

async fn submit(
    http: &reqwest::Client,
    page: &Page,
    form: &Form,
    fields: Vec<(String, String)>,
) -> reqwest::Result<Page> {
    let action = form
        .action
        .as_deref()
        .filter(|a| !a.is_empty())
        .and_then(|a| page.url.join(a).ok())
        .unwrap_or_else(|| page.url.clone());
    // Django checks the Referer of HTTPS form posts.
    let resp = http
        .post(action)
        .header(header::REFERER, page.url.as_str())
        .form(&fields)
        .send()
        .await?;
    Page::read(resp).await
}

/// A PKCE verifier (RFC 7636: 43-128 unreserved characters) and its S256 challenge.
pub fn pkce_pair() -> (String, String) {
    use rand::Rng;
    let bytes: [u8; 48] = rand::rng().random();
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = pkce_challenge(&verifier);
    (verifier, challenge)
}

pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

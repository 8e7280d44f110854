//! The status and login page (`web.listen`): an HTTP edge like `mqtt.rs`. It reads what the
//! bridge told the broker (a [`Board`] in a `watch` channel), logs in with the same PKCE flow
//! as the `login` command and stores the refresh token the same way, which the running
//! gateway takes up at once (or, for another process, at its next poll).
//!
//! Safety: [`access::decide`] lets in loopback clients (under `web.ingress` only the
//! Supervisor's proxy), anyone else only with `web.password` (HTTP Basic). Every form carries
//! the session's CSRF token; the session cookie is HttpOnly and SameSite=Strict.

pub mod access;
pub mod board;
pub mod page;
pub mod session;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::watch;

pub use board::Board;

use crate::auth::login::{self, LoginStep, LoginTokens};
use crate::auth::{Refresher, TokenStore};
use crate::config::Config;
use crate::mqtt::Link;
use session::{Notice, Sessions};

/// What the page reads and the few things it changes.
#[derive(Clone)]
pub struct WebContext {
    pub config: Arc<Config>,
    pub board: watch::Receiver<Board>,
    pub broker: watch::Receiver<Link>,
    /// The gateway's refresher, when it renews tokens (a login is taken up at once).
    pub refresher: Option<Arc<Refresher>>,
    /// Asks the bridge to poll now: after a login or log-out the page need not wait a poll.
    pub poll_now: Arc<tokio::sync::Notify>,
}

struct Shared {
    ctx: WebContext,
    store: TokenStore,
    sessions: Mutex<Sessions>,
    /// The email of the last login (in `auth.json`), and whether a token is stored.
    account: Mutex<(Option<String>, bool)>,
}

type App = Arc<Shared>;

/// Serves the page on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: WebContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let store = TokenStore::new(&ctx.config.state_dir());
    let stored = store.load_async().await;
    let account = (
        stored.as_ref().and_then(|s| s.account.clone()),
        stored.is_some(),
    );
    let app: App = Arc::new(Shared {
        ctx,
        store,
        sessions: Mutex::new(Sessions::default()),
        account: Mutex::new(account),
    });
    let router = Router::new()
        .route("/", get(show_page))
        .route("/status", get(show_status))
        .route("/login", post(log_in))
        .route("/code", post(send_code))
        .route("/logout", post(log_out))
        .layer(middleware::from_fn_with_state(app.clone(), gate))
        .with_state(app);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Refuses clients [`access::decide`] does not let in, before anything else runs.
async fn gate(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let web = &app.ctx.config.web;
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let host = request
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or(""));
    match access::decide(
        peer.ip(),
        web.ingress,
        web.password.as_ref(),
        authorization,
        host,
    ) {
        access::Verdict::Allow => next.run(request).await,
        access::Verdict::AskPassword => (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"prusa-connect-mqtt\", charset=\"UTF-8\"",
            )],
            "The page needs the password of web.password (any user name).\n",
        )
            .into_response(),
        access::Verdict::Refuse => {
            tracing::debug!("web page: refused a request from {peer}");
            (
                StatusCode::FORBIDDEN,
                if web.ingress {
                    "Only Home Assistant's ingress proxy may open this page (web.ingress); set \
                     web.password to allow other clients.\n"
                } else {
                    "Only this computer (loopback) may open this page; set web.password to \
                     allow other clients.\n"
                },
            )
                .into_response()
        }
    }
}

fn html(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

impl Shared {
    fn prefix(&self, headers: &HeaderMap) -> String {
        access::ingress_prefix(
            self.ctx.config.web.ingress,
            headers.get("x-ingress-path").and_then(|v| v.to_str().ok()),
        )
    }

    fn status_html(&self) -> String {
        let board = self.ctx.board.borrow().clone();
        let broker_connected = self.ctx.broker.borrow().connected;
        let (account, stored) = self
            .account
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        page::status(
            &board,
            &page::Facts {
                config: &self.ctx.config,
                broker_connected,
                account: account.as_deref(),
                stored,
                now_unix: crate::payloads::now_unix(),
            },
        )
    }

    /// Back to the page after a form (post, redirect, get).
    fn back(&self, headers: &HeaderMap) -> Response {
        let location = format!("{}/", self.prefix(headers));
        (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
    }

    fn notify(&self, headers: &HeaderMap, error: bool, text: String) {
        let id = session::cookie_id(cookie(headers));
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let (_, s) = sessions.open(id, Instant::now());
        s.notice = Some(Notice { error, text });
    }
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::COOKIE).and_then(|v| v.to_str().ok())
}

async fn show_page(State(app): State<App>, headers: HeaderMap) -> Response {
    let prefix = app.prefix(&headers);
    let (id, csrf, notice, awaiting) = {
        let mut sessions = app.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let (id, s) = sessions.open(session::cookie_id(cookie(&headers)), Instant::now());
        let awaiting = s.pending.as_ref().map(|(email, _, _)| email.clone());
        (id, s.csrf.clone(), s.notice.take(), awaiting)
    };
    let board = app.ctx.board.borrow().clone();
    let broker_connected = app.ctx.broker.borrow().connected;
    let (account, stored) = app
        .account
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let body = page::page(
        &board,
        &page::Facts {
            config: &app.ctx.config,
            broker_connected,
            account: account.as_deref(),
            stored,
            now_unix: crate::payloads::now_unix(),
        },
        &page::Forms {
            csrf: &csrf,
            notice: notice.as_ref(),
            awaiting_code: awaiting.as_deref(),
        },
    );
    let mut response = html(body);
    let set_cookie = format!(
        "{}={id}; Path={prefix}/; HttpOnly; SameSite=Strict",
        session::COOKIE
    );
    if let Ok(value) = HeaderValue::from_str(&set_cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn show_status(State(app): State<App>) -> Response {
    html(app.status_html())
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: Option<SecretString>,
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: Option<SecretString>,
}

#[derive(Deserialize)]
struct PlainForm {
    #[serde(default)]
    csrf: String,
}

/// The answer to a form post whose CSRF token is missing or wrong.
fn forged() -> Response {
    (
        StatusCode::FORBIDDEN,
        "The form was refused: it did not carry this page's security token (CSRF check). \
         Reload the page and try again.\n",
    )
        .into_response()
}

/// Checks the CSRF token; on success runs `f` on the session.
fn with_session<T>(
    app: &Shared,
    headers: &HeaderMap,
    csrf: &str,
    f: impl FnOnce(&mut session::Session) -> T,
) -> Option<T> {
    let id = session::cookie_id(cookie(headers));
    let mut sessions = app.sessions.lock().unwrap_or_else(|p| p.into_inner());
    sessions.checked(id, csrf, Instant::now()).map(f)
}

async fn log_in(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if with_session(&app, &headers, &form.csrf, |s| s.pending = None).is_none() {
        return forged();
    }
    let email = form.email.trim().to_string();
    let c = &app.ctx.config.connect;
    let password = form.password.unwrap_or_else(|| SecretString::from(""));
    let outcome = login::start(&c.auth_url, &email, &password, c.request_timeout).await;
    drop(password);
    match outcome {
        Ok(LoginStep::Done(tokens)) => finish(&app, &headers, &email, tokens).await,
        Ok(LoginStep::NeedsCode(pending)) => {
            let id = session::cookie_id(cookie(&headers));
            let mut sessions = app.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let (_, s) = sessions.open(id, Instant::now());
            s.pending = Some((email, pending, Instant::now()));
        }
        Err(e) => {
            tracing::warn!("web page: the login of {email} failed: {e}");
            app.notify(&headers, true, format!("Not logged in: {e}."));
        }
    }
    app.back(&headers)
}

async fn send_code(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let Some(pending) = with_session(&app, &headers, &form.csrf, |s| s.pending.take()) else {
        return forged();
    };
    let Some((email, pending, _)) = pending else {
        app.notify(
            &headers,
            true,
            "No login is waiting for a code (it expired after 10 minutes): log in again.".into(),
        );
        return app.back(&headers);
    };
    let code = form.code.unwrap_or_else(|| SecretString::from(""));
    match pending.submit_code(&code).await {
        Ok(tokens) => finish(&app, &headers, &email, tokens).await,
        Err(e) => {
            tracing::warn!("web page: the login of {email} failed: {e}");
            app.notify(&headers, true, format!("Not logged in: {e}."));
        }
    }
    app.back(&headers)
}

/// Stores the tokens as `login` does and hands them to the running gateway.
async fn finish(app: &Shared, headers: &HeaderMap, email: &str, tokens: LoginTokens) {
    let config = &app.ctx.config;
    let (store, configured) = (app.store.clone(), config.connect.refresh_token.clone());
    let (email_owned, stored) = (email.to_string(), tokens.clone());
    let write =
        move || crate::auth::store_login(&store, &stored, configured.as_ref(), Some(&email_owned));
    let saved = match &app.ctx.refresher {
        // Written while the gateway's tokens are held: a renewal in flight cannot put the
        // old account's token back over it.
        Some(refresher) => refresher.use_login(&tokens, email, write).await,
        None => crate::store::off_runtime(write).await.and_then(|r| r),
    };
    if let Err(e) = saved {
        tracing::error!("web page: logged in, but cannot store the token: {e:#}");
        app.notify(
            headers,
            true,
            format!(
                "Logged in, but the token cannot be stored in {}: {e:#}. Make state.dir \
                 writable for the service and log in again.",
                app.store.path().display()
            ),
        );
        return;
    }
    *app.account.lock().unwrap_or_else(|p| p.into_inner()) = (Some(email.to_string()), true);
    app.ctx.poll_now.notify_one();
    tracing::info!("web page: logged in as {email}; the refresh token is stored");
    let mut text = format!("Logged in as {email}. The printers appear in a moment.");
    if app.ctx.refresher.is_none() {
        text.push_str(
            " Note: the config sets connect.access_token or connect.token_file, which take \
             precedence; remove them (and restart) to use this login.",
        );
    }
    app.notify(headers, false, text);
}

async fn log_out(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<PlainForm>,
) -> Response {
    if with_session(&app, &headers, &form.csrf, |s| s.pending = None).is_none() {
        return forged();
    }
    let removed = match &app.ctx.refresher {
        // Deleted while the gateway's tokens are held: a renewal in flight cannot write
        // the file again.
        Some(refresher) => refresher.forget().await,
        None => {
            let store = app.store.clone();
            crate::store::off_runtime(move || store.remove())
                .await
                .and_then(|r| r)
        }
    };
    app.ctx.poll_now.notify_one();
    match removed {
        Ok(()) => {
            *app.account.lock().unwrap_or_else(|p| p.into_inner()) = (None, false);
            tracing::info!("web page: logged out; the stored refresh token is deleted");
            app.notify(
                &headers,
                false,
                "Logged out: the stored token is deleted and the printers go offline.".into(),
            );
        }
        Err(e) => {
            tracing::error!("web page: cannot log out: {e:#}");
            app.notify(&headers, true, format!("Cannot delete the token: {e:#}."));
        }
    }
    app.back(&headers)
}

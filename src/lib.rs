//! prusa-connect-mqtt: bridges 3D printers in Prusa Connect to MQTT.
//!
//! Data comes in through [`connect`] (Connect's HTTP API), is turned into messages by the
//! [`bridge`]'s sans-IO core (with [`payloads`] and [`discovery`], pure functions), and goes
//! out through [`mqtt`], which delivers what [`outbox`] says the broker is owed. The bridge's
//! shell is the loop that ties them together.

// Functions stay under 80 lines (clippy.toml); tests may be longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod addon;
pub mod auth;
pub mod bridge;
pub mod check;
pub mod command;
pub mod config;
pub mod connect;
pub mod demo;
pub mod discovery;
pub mod embedded_broker;
pub mod http;
pub mod journal;
pub mod message;
pub mod mqtt;
pub mod outbox;
pub mod payloads;
pub mod shard;
pub mod spoolman;
pub mod store;
pub mod topics;
pub mod web;

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::config::Config;
use crate::connect::{ConnectClient, TokenSource};

/// How long a clean stop may take to flush `offline` to the broker (after at most
/// `COMMAND_GRACE` for a command in progress: the whole stop stays under 5 s).
const STOP_FLUSH: Duration = Duration::from_millis(2500);

/// The credentials the config names: an access token, a token file, or a refresh token
/// (configured, or stored in `state.dir` by `login`).
pub fn token_source(config: &Config) -> Result<TokenSource> {
    let c = &config.connect;
    if let Some(token) = config.static_access_token() {
        return Ok(TokenSource::Static(token));
    }
    if let Some(path) = &c.token_file {
        return Ok(TokenSource::File(path.clone()));
    }
    // With the web page the gateway can start without a token and wait for a login there.
    let awaiting_login = config.web.listen.is_some();
    if !awaiting_login
        && c.refresh_token.is_none()
        && auth::TokenStore::new(&config.state_dir()).load().is_none()
    {
        bail!(
            "no Connect credentials: {} (it stores a refresh token in {}), or set \
             connect.refresh_token, connect.access_token or connect.token_file",
            auth::LOGIN_ACTION,
            config.state_dir().display()
        );
    }
    let make = if awaiting_login {
        auth::Refresher::new_or_awaiting_login
    } else {
        auth::Refresher::new
    };
    let refresher = make(
        &c.auth_url,
        &config.state_dir(),
        c.refresh_token.as_ref(),
        c.refresh_token_file.clone(),
        c.request_timeout,
    )?;
    Ok(TokenSource::Refresh(std::sync::Arc::new(refresher)))
}

/// Runs the service until `shutdown` resolves, then publishes `offline` and stops.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    run_with(config, shutdown, false).await
}

/// [`run`], and with `clear_retained` removes every retained topic it published when it
/// stops (the demo leaves nothing behind on a real broker).
pub async fn run_with(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
    clear_retained: bool,
) -> Result<()> {
    let StartUp {
        tokens,
        store,
        memory,
        journal,
        options,
        ledger,
    } = StartUp::read(config.clone()).await?;
    let refresher = match &tokens {
        TokenSource::Refresh(r) => Some(r.clone()),
        _ => None,
    };
    // Bound before anything starts: an address in use is a start-up error naming the key.
    let web_listener = bind_web(&config).await?;
    let connect = ConnectClient::new(&config.connect.url, tokens, config.connect.request_timeout)
        .context("cannot set up the Connect client")?
        .with_max_response_bytes(config.connect.max_response_bytes)
        .with_request_budget(
            config.connect.max_requests_per_second,
            config.connect.request_burst,
        );
    let settings = bridge::Settings::from_config(&config)?;
    let status = settings.topics.bridge_state();
    let ha_status = config
        .homeassistant
        .enabled
        .then(|| config.homeassistant.status_topic.clone());
    let session = mqtt::start(
        options,
        bridge::subscriptions(&config),
        &status,
        ha_status,
        Some(journal),
    );
    let abort = connect.abort_handle();
    let live = config.connect.live.then(|| {
        connect::live::start(
            connect.clone(),
            connect::live::LiveSettings {
                url: config.connect.live_url.clone(),
                auth_url: config.connect.auth_url.clone(),
                ca_file: mqtt::SYSTEM_CA_BUNDLE.into(),
            },
        )
    });
    let core = bridge::Core::new(settings, memory);
    let mut shell = bridge::Shell::new(
        core,
        connect,
        session.publisher.clone(),
        store,
        clear_retained,
        live,
    );
    if let (Some(url), Some((store, ledger))) = (&config.spoolman.url, ledger) {
        let client = spoolman::SpoolmanClient::new(url, config.connect.request_timeout)
            .map_err(anyhow::Error::msg)?;
        let link = spoolman::SpoolmanLink::start(client, store, ledger, config.spoolman.interval);
        shell = shell.with_spoolman(link);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    // The page reads what the shell hands to the broker.
    let (shell, web) = match web_listener {
        None => (shell, None),
        Some(listener) => {
            let (shell, task) =
                serve_web(listener, &config, shell, &session, refresher, stop.clone());
            (shell, Some(task))
        }
    };
    let running = shell.run(
        session.link,
        session.incoming,
        stop.clone().cancelled_owned(),
    );
    let result = run_until_shutdown(running, shutdown, &stop, &abort).await;
    // The page stops with the bridge (its graceful shutdown waits for requests in progress).
    stop.cancel();
    stop_web(web).await;
    stop_session(&session.publisher, session.task).await;
    result.map(|_| ())
}

/// The listener of `web.listen`, when the page is on.
async fn bind_web(config: &Config) -> Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = config.web.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("web.listen = \"{addr}\": cannot listen there"))?;
    Ok(Some(listener))
}

/// Waits a second for the page's graceful shutdown, then ends it.
async fn stop_web(web: Option<tokio::task::JoinHandle<std::io::Result<()>>>) {
    if let Some(mut web) = web
        && tokio::time::timeout(Duration::from_secs(1), &mut web)
            .await
            .is_err()
    {
        web.abort();
    }
}

/// The shell asked the session to deliver what is owed (`offline` last) and disconnect: a
/// clean DISCONNECT suppresses the last will, so `offline` must reach the broker first.
async fn stop_session(publisher: &mqtt::Publisher, mut task: tokio::task::JoinHandle<()>) {
    publisher.stop();
    if tokio::time::timeout(STOP_FLUSH, &mut task).await.is_err() {
        tracing::warn!("the MQTT broker did not take the last messages in time");
        task.abort();
    }
}

/// What the start reads from disk: the credentials, the state file, the journal of events
/// owed to the broker and the broker's certificates.
struct StartUp {
    tokens: TokenSource,
    store: store::Store<bridge::registry::StateFile>,
    memory: bridge::registry::StateFile,
    journal: journal::Journal,
    options: rumqttc::MqttOptions,
    /// `spoolman.json`, with `spoolman.url`.
    ledger: Option<(store::Store<spoolman::Ledger>, spoolman::Ledger)>,
}

impl StartUp {
    /// Reads it off the runtime's threads.
    async fn read(config: Config) -> Result<StartUp> {
        tokio::task::spawn_blocking(move || {
            let tokens = token_source(&config)?;
            let (store, memory) = store::Store::open(&config.state_dir())?;
            let journal = journal::Journal::open(&config.state_dir())?;
            let status = topics::Topics::for_config(&config).bridge_state();
            let options = mqtt::options(&config.mqtt_for_instance(), Some(&status))?;
            let ledger = match config.spoolman.url {
                Some(_) => Some(store::Store::open_file(
                    &config.state_dir(),
                    "spoolman.json",
                )?),
                None => None,
            };
            Ok(StartUp {
                tokens,
                store,
                memory,
                journal,
                options,
                ledger,
            })
        })
        .await
        .context("the start-up stopped")?
    }
}

/// Starts the web page on `listener`; the shell, handed back, feeds it what goes to the
/// broker and wakes up when the page asks for a poll. The page stops when `stop` is cancelled.
fn serve_web(
    listener: tokio::net::TcpListener,
    config: &Config,
    shell: bridge::Shell,
    session: &mqtt::Session,
    refresher: Option<std::sync::Arc<auth::Refresher>>,
    stop: tokio_util::sync::CancellationToken,
) -> (bridge::Shell, tokio::task::JoinHandle<std::io::Result<()>>) {
    let (board, view) = tokio::sync::watch::channel(web::Board::new(&config.mqtt.base_topic));
    let poll_now = std::sync::Arc::new(tokio::sync::Notify::new());
    let context = web::WebContext {
        config: std::sync::Arc::new(config.clone()),
        board: view,
        broker: session.link.clone(),
        refresher,
        poll_now: poll_now.clone(),
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("web page on http://{addr}/");
    }
    let task = tokio::spawn(web::serve(listener, context, stop.cancelled_owned()));
    (shell.with_board(board).with_poll_now(poll_now), task)
}

/// Runs the bridge until it ends or `shutdown` resolves; then lets it finish what it is
/// doing, but gives Connect only [`bridge::STOP_GRACE`] before its requests are abandoned.
async fn run_until_shutdown(
    running: impl Future<Output = Result<()>>,
    shutdown: impl Future<Output = ()>,
    stop: &tokio_util::sync::CancellationToken,
    abort: &tokio_util::sync::CancellationToken,
) -> Result<()> {
    tokio::pin!(running);
    tokio::pin!(shutdown);
    tokio::select! {
        result = &mut running => result,
        _ = &mut shutdown => {
            // Let the bridge finish what it is doing, but give Connect only STOP_GRACE.
            stop.cancel();
            let give_up = async {
                tokio::time::sleep(bridge::STOP_GRACE).await;
                abort.cancel();
                std::future::pending::<()>().await
            };
            tokio::select! {
                result = &mut running => result,
                _ = give_up => unreachable!("pending never resolves"),
            }
        }
    }
}

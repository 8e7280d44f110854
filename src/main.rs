//! The command line: parse arguments, load the config, set up logging, call the library.

// Functions stay under 80 lines (clippy.toml); tests may be longer.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use prusa_connect_mqtt::addon;
use prusa_connect_mqtt::config::{Config, LogFormat, redact_url};

#[derive(Parser)]
#[command(
    name = "prusa-connect-mqtt",
    version,
    about = "Bridges 3D printers in Prusa Connect to MQTT, with Home Assistant discovery",
    after_help = "Without a command, `run` is assumed.\n\nGetting started: `demo` (no account needed), then `login`, `check`, `run`.\nThe README has the topic reference, Home Assistant and Node-RED examples, and troubleshooting."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (default: /etc/prusa-connect-mqtt/config.toml, or the file
    /// PRUSA_CONNECT_MQTT_CONFIG names, when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Run,
    /// Try the config, the token, the printers and the broker; say what to fix.
    ///
    /// Lists each printer with its topics and the Home Assistant entity ids it will get.
    /// Exit code 0 when all is well, 2 when something must be fixed.
    Check,
    /// Log in to your Prusa account and store a refresh token in the state directory.
    ///
    /// Asks for the email, the password (not echoed, never stored) and a 2FA code when the
    /// account has one. From a pipe it reads one answer per line. Run it with sudo for the
    /// service, so the token lands in the service's state directory.
    Login {
        /// Account email (asked when not given).
        #[arg(long)]
        email: Option<String>,
        /// Store the token here instead of the config's state.dir.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// See it work without an account: simulated printers, the gateway, a broker.
    ///
    /// Three simulated printers run a scripted day; the broker is localhost:1883 when one
    /// answers, else an embedded one; every message is printed; retained topics are removed
    /// on Ctrl-C.
    Demo {
        /// Broker URL instead of localhost:1883 / embedded.
        #[arg(long)]
        broker: Option<String>,
        /// Stop after this long (e.g. "2m"); default: until Ctrl-C.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
    },
    /// The simulated Connect alone, for dashboards, flows and benchmarks.
    Simulate {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Number of printers (a farm cycling between idle and printing).
        #[arg(long, default_value_t = 3)]
        printers: usize,
        /// Accept only this bearer token (default: any; tokens from the account server
        /// are accepted while they are valid).
        #[arg(long)]
        token: Option<String>,
        /// An account for `login`: EMAIL:PASSWORD or EMAIL:PASSWORD:TOTP-CODE (repeatable).
        /// A refresh token for each is printed at start.
        #[arg(long = "user", value_name = "EMAIL:PASSWORD[:TOTP]")]
        users: Vec<String>,
        /// Lifetime of the access tokens the account server issues.
        #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
        access_ttl: std::time::Duration,
    },
}

/// `check` found problems (distinct from 1: the command itself failed).
const CHECK_FAILED: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The service runs on one thread: its work is waiting on sockets (2,000 printers take
    // about 6 % of a core), and with one thread glibc's malloc keeps one arena instead of
    // one per thread: 79 MB resident instead of 97 MB at 2,000 printers after 3 minutes
    // (issue 25). `demo` and `simulate` also run a simulator and a broker: all threads.
    let mut builder = match cli.command {
        None | Some(Command::Run) => tokio::runtime::Builder::new_current_thread(),
        Some(_) => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if matches!(cli.command, Some(Command::Check)) {
        init_logging("error", LogFormat::Text);
        let report = runtime.block_on(prusa_connect_mqtt::check::check(cli.config.as_deref()));
        print!("{}", report.text());
        return if report.problems == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(CHECK_FAILED)
        };
    }
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run_service(cli.config.as_deref()).await,
        Command::Check => unreachable!("handled in main"),
        Command::Login { email, state_dir } => {
            let mut config = addon::load_config(cli.config.as_deref()).await?;
            if let Some(dir) = state_dir {
                config.state.dir = dir;
            }
            init_logging("warn", LogFormat::Text);
            login::run(&config, email).await
        }
        Command::Demo { broker, duration } => {
            init_logging("warn", LogFormat::Text);
            // Only a config named with --config: the demo is for trying things.
            let config = match cli.config.as_deref() {
                Some(path) => Some(Config::load(Some(path))?),
                None => None,
            };
            prusa_connect_mqtt::demo::run(
                prusa_connect_mqtt::demo::DemoOptions {
                    broker,
                    duration,
                    config,
                },
                shutdown_signal(),
            )
            .await
        }
        Command::Simulate {
            listen,
            printers,
            token,
            users,
            access_ttl,
        } => simulate(listen, printers, token, &users, access_ttl).await,
    }
}

/// `run`: the service, with the config of the add-on when it runs as one.
async fn run_service(config_path: Option<&std::path::Path>) -> Result<()> {
    let config = addon::load_config(config_path).await?;
    init_logging(&config.log.level, config.log.format);
    tracing::info!("prusa-connect-mqtt {} starting", env!("CARGO_PKG_VERSION"));
    if let Some(addon) = addon::Addon::from_env(config_path) {
        tracing::info!(
            "Home Assistant add-on mode: options from {}, broker {} from the Supervisor",
            addon.options_path().display(),
            redact_url(&config.mqtt.url)
        );
    }
    prusa_connect_mqtt::run(config, shutdown_signal()).await
}

/// `simulate`: the simulated Connect alone, until Ctrl-C.
async fn simulate(
    listen: SocketAddr,
    printers: usize,
    token: Option<String>,
    users: &[String],
    access_ttl: std::time::Duration,
) -> Result<()> {
    init_logging("info", LogFormat::Text);
    use prusa_connect_sim::{Scenario, SimOptions, Simulator};
    let sim = Simulator::new(SimOptions {
        token,
        scenario: Scenario::Farm { printers },
    });
    sim.set_access_ttl(access_ttl);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    println!("simulated Prusa Connect with {printers} printers on {url}");
    for user in users {
        let mut parts = user.splitn(3, ':');
        let (Some(email), Some(password)) = (parts.next(), parts.next()) else {
            anyhow::bail!("--user {user:?}: expected EMAIL:PASSWORD or EMAIL:PASSWORD:TOTP");
        };
        sim.add_user(email, password, parts.next());
        println!(
            "account {email}: log in with auth_url = \"{url}\"; a refresh token: {}",
            sim.issue_refresh_token(email)
        );
    }
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(prusa_connect_sim::run_ticker(
        sim.clone(),
        std::time::Duration::from_secs(1),
        stop.clone().cancelled_owned(),
    ));
    let served = sim.serve(listener, shutdown_signal()).await;
    stop.cancel();
    served.context("the simulator stopped")
}

mod login {
    //! The prompts of `login`; the flow itself is `prusa_connect_mqtt::auth::login`.

    use std::io::{BufRead, IsTerminal, Write};

    use anyhow::{Context, Result, bail};
    use prusa_connect_mqtt::auth::{self, TokenStore};
    use prusa_connect_mqtt::config::Config;
    use secrecy::{ExposeSecret, SecretString};

    pub async fn run(config: &Config, email: Option<String>) -> Result<()> {
        let interactive = std::io::stdin().is_terminal();
        let email = match email {
            Some(e) => e,
            None => ask("Email: ", interactive)?,
        };
        if email.trim().is_empty() {
            bail!("no email given");
        }
        let password = SecretString::from(if interactive {
            rpassword::prompt_password("Password: ").context("cannot read the password")?
        } else {
            ask("Password: ", false)?
        });
        if password.expose_secret().is_empty() {
            bail!("no password given");
        }
        let ask_code = move || {
            let code = ask("Two-factor code: ", interactive)?;
            Ok((!code.trim().is_empty()).then(|| SecretString::from(code)))
        };
        eprintln!("Logging in at {} ...", config.connect.auth_url);
        let tokens = auth::login::login(
            &config.connect.auth_url,
            email.trim(),
            &password,
            ask_code,
            config.connect.request_timeout,
        )
        .await?;
        drop(password);
        let store = TokenStore::new(&config.state_dir());
        auth::store_login(
            &store,
            &tokens,
            config.connect.refresh_token.as_ref(),
            Some(email.trim()),
        )
        .with_context(|| {
            format!(
                "logged in, but cannot store the token in {} (run as the service's user or \
                     with sudo, or choose --state-dir)",
                store.path().display()
            )
        })?;
        if config.connect.shard.is_some() {
            // The shard's folder was made by this (root) login: the service owns state.dir.
            give_to_owner_of(&config.state_dir(), &config.state.dir);
        }
        give_to_directory_owner(store.path());
        println!(
            "Logged in. The refresh token is stored in {}.",
            store.path().display()
        );
        if config.connect.access_token.is_some() || config.connect.token_file.is_some() {
            println!(
                "Note: the config sets connect.access_token or connect.token_file, which take \
                 precedence; remove them to use this login."
            );
        }
        println!(
            "Next: start the service (sudo systemctl restart prusa-connect-mqtt) or run \
             `prusa-connect-mqtt check`. A running gateway waiting for a login picks the token \
             up at its next poll."
        );
        Ok(())
    }

    fn ask(prompt: &str, interactive: bool) -> Result<String> {
        if interactive {
            eprint!("{prompt}");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        let n = std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read from standard input")?;
        if n == 0 && !interactive {
            bail!(
                "standard input ended before the {}",
                prompt.trim_end_matches([':', ' ']).to_lowercase()
            );
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    /// `sudo prusa-connect-mqtt login` must leave a file the service's user can read.
    fn give_to_directory_owner(path: &std::path::Path) {
        if let Some(dir) = path.parent() {
            give_to_owner_of(path, dir);
        }
    }

    /// Gives `path` to the owner of `dir` (when they differ).
    fn give_to_owner_of(path: &std::path::Path, dir: &std::path::Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if let (Ok(d), Ok(f)) = (std::fs::metadata(dir), std::fs::metadata(path))
                && (d.uid(), d.gid()) != (f.uid(), f.gid())
                && let Err(e) = std::os::unix::fs::chown(path, Some(d.uid()), Some(d.gid()))
            {
                eprintln!(
                    "warning: cannot give {} to the owner of {} ({e}); the service may not read it",
                    path.display(),
                    dir.display()
                );
            }
        }
    }
}

fn init_logging(level: &str, format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // The embedded broker (demo) logs every client disconnect at ERROR.
    let filter =
        prusa_connect_mqtt::embedded_broker::quiet_broker_logs(filter, rust_log.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in journald or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stopping");
}

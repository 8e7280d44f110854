//! The command line: parse arguments, load the config, set up logging, call the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use prusa_connect_mqtt::config::{Config, LogFormat};

#[derive(Parser)]
#[command(
    name = "prusa-connect-mqtt",
    version,
    about = "Bridges 3D printers in Prusa Connect to MQTT, with Home Assistant discovery",
    after_help = "Without a command, `run` is assumed. Try `prusa-connect-mqtt demo` first: it needs no account."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (default: /etc/prusa-connect-mqtt/config.toml when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Run,
    /// Zero set-up: a simulated Connect with printers doing a scripted day, the gateway, a
    /// broker (localhost:1883 or an embedded one), and a printout of every message.
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
        /// Accept only this bearer token (default: any).
        #[arg(long)]
        token: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
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
        Command::Run => {
            let config = Config::load(cli.config.as_deref())?;
            init_logging(&config.log.level, config.log.format);
            tracing::info!("prusa-connect-mqtt {} starting", env!("CARGO_PKG_VERSION"));
            prusa_connect_mqtt::run(config, shutdown_signal()).await
        }
        Command::Demo { broker, duration } => {
            init_logging("warn", LogFormat::Text);
            prusa_connect_mqtt::demo::run(
                prusa_connect_mqtt::demo::DemoOptions { broker, duration },
                shutdown_signal(),
            )
            .await
        }
        Command::Simulate {
            listen,
            printers,
            token,
        } => {
            init_logging("info", LogFormat::Text);
            use prusa_connect_mqtt::simulator::{Scenario, SimOptions, Simulator};
            let sim = Simulator::new(SimOptions {
                token,
                scenario: Scenario::Farm { printers },
            });
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            println!(
                "simulated Prusa Connect with {printers} printers on http://{}",
                listener.local_addr()?
            );
            let stop = tokio_util::sync::CancellationToken::new();
            tokio::spawn(prusa_connect_mqtt::simulator::run_ticker(
                sim.clone(),
                std::time::Duration::from_secs(1),
                stop.clone().cancelled_owned(),
            ));
            let served = sim.serve(listener, shutdown_signal()).await;
            stop.cancel();
            served.context("the simulator stopped")
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
        .with_writer(std::io::stderr);
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

//! `demo`: zero set-up. A simulated Connect with printers living a scripted day, the gateway
//! against it, the configured broker or an embedded one, and a printout of what is published.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use prusa_connect_sim::{Scenario, SimOptions, Simulator};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{BrokerAddress, Config};

pub const DEMO_TOKEN: &str = "demo-access-token";
pub const DEMO_BASE_TOPIC: &str = "prusa_connect_demo";

pub struct DemoOptions {
    /// Broker URL; `None` tries localhost:1883 and falls back to an embedded broker.
    pub broker: Option<String>,
    /// Stop after this long; `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    /// A config given with `--config`: its broker (URL, credentials, TLS) and its Home
    /// Assistant settings are used; topics stay the demo's own.
    pub config: Option<Config>,
}

pub async fn run(
    opts: DemoOptions,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    let stop = CancellationToken::new();
    let (sim, sim_addr) = start_simulator(&stop).await?;
    let broker = match (opts.broker, &opts.config) {
        (Some(url), _) => url,
        (None, Some(user)) => user.mqtt.url.clone(),
        (None, None) => local_or_embedded_broker().await?,
    };
    let state_dir =
        std::env::temp_dir().join(format!("prusa-connect-mqtt-demo-{}", std::process::id()));
    let config = demo_config(sim_addr, &broker, &state_dir, opts.config)?;
    // The demo's own discovery nodes: only those are printed.
    let nodes: Vec<String> = sim
        .printers()
        .iter()
        .map(|uuid| crate::discovery::node_id(uuid))
        .chain([format!("{DEMO_BASE_TOPIC}_bridge")])
        .collect();
    print_banner(sim_addr, &broker)?;

    let printer = Printout::start(&config, nodes).await?;

    let deadline = async move {
        match opts.duration {
            Some(d) => tokio::select! { _ = tokio::time::sleep(d) => {}, _ = shutdown => {} },
            None => shutdown.await,
        }
    };
    let result = crate::run_with(config, deadline, true).await;
    printer.stop().await;
    stop.cancel();
    let _ = std::fs::remove_dir_all(&state_dir);
    result
}

/// The simulated Connect on a free local port, living its scripted day until `stop`.
async fn start_simulator(stop: &CancellationToken) -> Result<(Simulator, SocketAddr)> {
    let sim = Simulator::new(SimOptions {
        token: Some(DEMO_TOKEN.to_string()),
        scenario: Scenario::Demo,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let sim_addr = listener.local_addr()?;
    tokio::spawn(sim.clone().serve(listener, stop.clone().cancelled_owned()));
    tokio::spawn(prusa_connect_sim::run_ticker(
        sim.clone(),
        Duration::from_secs(1),
        stop.clone().cancelled_owned(),
    ));
    Ok((sim, sim_addr))
}

/// The gateway's config for the demo: the simulator, `broker`, the demo's topics; from the
/// user's config (`--config`) its broker settings and Home Assistant settings.
fn demo_config(
    sim_addr: SocketAddr,
    broker: &str,
    state_dir: &std::path::Path,
    user: Option<Config>,
) -> Result<Config> {
    let mut config = Config::from_toml(&format!(
        r#"
        [connect]
        url = "http://{sim_addr}"
        auth_url = "http://{sim_addr}"
        access_token = "{DEMO_TOKEN}"
        live = true
        live_url = "ws://{sim_addr}/mqtt"
        poll_interval = "2s"
        active_poll_interval = "1s"
        [mqtt]
        url = "{broker}"
        client_id = "prusa-connect-mqtt-demo-{pid}"
        base_topic = "{DEMO_BASE_TOPIC}"
        [state]
        dir = {state_dir:?}
        "#,
        pid = std::process::id(),
    ))?;
    if let Some(user) = user {
        // Never the user's own topics: the demo removes its retained topics when it stops.
        config.mqtt = crate::config::MqttConfig {
            url: broker.to_string(),
            client_id: config.mqtt.client_id.clone(),
            base_topic: config.mqtt.base_topic.clone(),
            printer_ids: Default::default(),
            ..user.mqtt
        };
        config.homeassistant = user.homeassistant;
    }
    Ok(config)
}

fn print_banner(sim_addr: SocketAddr, broker: &str) -> Result<()> {
    println!("prusa-connect-mqtt demo");
    println!(
        "  simulated Connect: http://{sim_addr}  (3 printers: one fails a print, one is paused and resumed)"
    );
    println!("  live channel:      ws://{sim_addr}/mqtt  (connect.live: changes within a second)");
    println!("  MQTT broker:       {broker}");
    let addr = BrokerAddress::parse(broker)?;
    println!(
        "  watch it:          mosquitto_sub -h {} -p {} -v -t '{DEMO_BASE_TOPIC}/#'",
        addr.host, addr.port
    );
    println!("  stop:              Ctrl-C (the demo removes its retained topics when it stops)\n");
    Ok(())
}

/// The broker on localhost:1883 when one answers, otherwise an embedded one (on 1883 when
/// free, so `mosquitto_sub` finds it, else on any free port).
async fn local_or_embedded_broker() -> Result<String> {
    let local: SocketAddr = "127.0.0.1:1883".parse().expect("literal address");
    if tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(local),
    )
    .await
    .is_ok_and(|r| r.is_ok())
    {
        return Ok("mqtt://127.0.0.1:1883".into());
    }
    let addr = match crate::embedded_broker::start(local).await {
        Ok(addr) => addr,
        Err(_) => crate::embedded_broker::start("127.0.0.1:0".parse().expect("literal address"))
            .await
            .context("no broker on localhost:1883 and the embedded one did not start")?,
    };
    println!("  (no broker answered on localhost:1883: started an embedded one on {addr})");
    Ok(format!("mqtt://{addr}"))
}

/// Subscribes to everything the demo publishes and prints it, one line a message.
struct Printout {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Printout {
    /// Prints what is published under the demo's base topic and the discovery of `nodes`
    /// (not other programs' discovery on the same broker).
    async fn start(config: &Config, nodes: Vec<String>) -> Result<Printout> {
        let mut cfg = config.mqtt.clone();
        cfg.client_id = format!("prusa-connect-mqtt-demo-printer-{}", std::process::id());
        let opts = crate::mqtt::options(&cfg, None)?;
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        eventloop.set_network_options(crate::mqtt::low_latency());
        let prefix = config.homeassistant.discovery_prefix.clone();
        let filters = [
            format!("{}/#", config.mqtt.base_topic),
            format!("{prefix}/#"),
        ];
        let ours = move |topic: &str| {
            !topic.starts_with(&format!("{prefix}/"))
                || topic
                    .split('/')
                    .any(|segment| nodes.iter().any(|n| n == segment))
        };
        let sub_client = client.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &filters {
                            let _ = sub_client.try_subscribe(f.clone(), QoS::AtMostOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if p.payload.is_empty() || !ours(&p.topic) {
                            continue;
                        }
                        println!("{}", describe(&p.topic, &p.payload));
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                        crate::mqtt::drain(&mut eventloop).await;
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        });
        Ok(Printout { client, task })
    }

    async fn stop(self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

fn describe(topic: &str, payload: &[u8]) -> String {
    if topic.ends_with("/config") {
        return format!("{topic}  <discovery, {} bytes>", payload.len());
    }
    if topic.contains("/camera/") || topic.ends_with("/job/preview") {
        return format!("{topic}  <image, {} bytes>", payload.len());
    }
    let text = String::from_utf8_lossy(payload);
    let mut shown: String = text.chars().take(200).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{topic}  {shown}")
}

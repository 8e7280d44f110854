//! Command round trip: MQTT publish -> gateway -> Connect (simulated, over TCP) -> reply on
//! the broker, measured from a subscriber. Run with `cargo bench --bench command_roundtrip`
//! (`-- N` for another count; default 1000).

#[path = "../tests/common/broker.rs"]
mod broker;

use std::time::{Duration, Instant};

use broker::{Subscriber, TestBroker};
use prusa_connect_mqtt::config::Config;
use prusa_connect_sim::{PrinterSpec, Scenario, SimOptions, Simulator};
use tokio_util::sync::CancellationToken;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let broker = TestBroker::start();
        let sim = Simulator::new(SimOptions { token: Some("t".into()), scenario: Scenario::Empty });
        sim.add_printer(PrinterSpec::named("Bench MK4"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(sim.clone().serve(listener, stop.clone().cancelled_owned()));
        let state = std::env::temp_dir().join(format!("pcm-bench-{}", std::process::id()));
        let config = Config::from_toml(&format!(
            "[connect]\nurl = \"http://{addr}\"\naccess_token = \"t\"\n[mqtt]\nurl = \"{}\"\nclient_id = \"bench-gw\"\n[state]\ndir = {state:?}\n[commands]\nmax_per_second = 0\n",
            broker.url()
        ))
        .unwrap();
        let gateway = tokio::spawn(prusa_connect_mqtt::run(config, stop.clone().cancelled_owned()));
        let sub = Subscriber::connect(&broker, &["prusa_connect/#"]).await;
        sub.wait_for("prusa_connect/bench_mk4/state", Duration::from_secs(20), |_| true).await;

        let reply_topic = "prusa_connect/bench_mk4/command/response";
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
            let payload = format!(
                r#"{{"command":"MOVE","kwargs":{{"x":{},"y":100,"feedrate":3000}},"transaction":"{i}"}}"#,
                i % 200
            );
            let started = Instant::now();
            sub.publish("prusa_connect/bench_mk4/command", payload, false).await;
            let reply = sub
                .wait_for(reply_topic, Duration::from_secs(10), |m| m.json()["transaction"] == i.to_string().as_str())
                .await
                .json();
            times.push(started.elapsed());
            assert_eq!(reply["status"], "ok", "{reply}");
        }
        times.sort();
        let sent = sim.requests().iter().filter(|r| r.path.ends_with("/commands/sync")).count();
        println!(
            "command round trip over {n} MOVE commands (broker: {}): median {:.2} ms, p99 {:.2} ms, max {:.2} ms; Connect requests: {sent}",
            if broker.is_mosquitto() { "mosquitto" } else { "embedded" },
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3,
        );
        stop.cancel();
        let _ = gateway.await;
        let _ = std::fs::remove_dir_all(state);
    });
}

//! The test broker and subscriber behave alike on mosquitto and on the embedded rumqttd, and
//! the subscriber survives a broker restart.

mod common;

use std::net::{Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::broker::{Subscriber, TestBroker};

const WAIT: Duration = Duration::from_secs(10);

fn mosquitto() -> Option<TestBroker> {
    let broker = TestBroker::start_mosquitto();
    if broker.is_none() {
        eprintln!("skipped: mosquitto is neither on PATH nor in /usr/sbin");
    }
    broker
}

/// What the bridge's tests rely on: retained state for late subscribers, live updates, big
/// camera payloads, JSON, arrival order.
async fn delivers_retained_live_and_large_messages(broker: &TestBroker) {
    let publisher = Subscriber::connect(broker, &[]).await;
    publisher.publish("pcm/printer/1/state", "IDLE", true).await;

    let subscriber = Subscriber::connect(broker, &["pcm/#"]).await;
    let retained = subscriber
        .wait_for("pcm/printer/1/state", WAIT, |m| m.retain)
        .await;
    assert_eq!(retained.text(), "IDLE");

    publisher
        .publish("pcm/printer/1/state", "PRINTING", false)
        .await;
    let live = subscriber
        .wait_for("pcm/printer/1/state", WAIT, |m| m.text() == "PRINTING")
        .await;
    assert!(!live.retain);

    let image: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    publisher
        .publish("pcm/printer/1/camera", image.clone(), false)
        .await;
    let snapshot = subscriber
        .wait_for("pcm/printer/1/camera", WAIT, |_| true)
        .await;
    assert!(snapshot.payload == image, "200 KiB payload corrupted");

    publisher
        .publish("pcm/printer/1/telemetry", r#"{"temp_nozzle":215.5}"#, false)
        .await;
    let telemetry = subscriber
        .wait_for("pcm/printer/1/telemetry", WAIT, |_| true)
        .await;
    assert_eq!(telemetry.json()["temp_nozzle"], 215.5);

    let states: Vec<_> = subscriber
        .on("pcm/printer/1/state")
        .iter()
        .map(|m| m.text())
        .collect();
    assert_eq!(states, ["IDLE", "PRINTING"]);
    let topics: Vec<_> = subscriber.messages().into_iter().map(|m| m.topic).collect();
    assert_eq!(
        topics,
        [
            "pcm/printer/1/state",
            "pcm/printer/1/state",
            "pcm/printer/1/camera",
            "pcm/printer/1/telemetry"
        ]
    );
}

#[tokio::test]
async fn mosquitto_delivers_retained_live_and_large_messages() {
    let Some(broker) = mosquitto() else { return };
    assert!(broker.is_mosquitto());
    delivers_retained_live_and_large_messages(&broker).await;
}

#[tokio::test]
async fn embedded_broker_delivers_retained_live_and_large_messages() {
    let broker = TestBroker::start_embedded();
    assert!(!broker.is_mosquitto());
    delivers_retained_live_and_large_messages(&broker).await;
}

#[tokio::test]
async fn start_picks_the_broker_pcm_test_broker_names() {
    let broker = TestBroker::start();
    match std::env::var("PCM_TEST_BROKER").as_deref() {
        Ok("embedded") => assert!(!broker.is_mosquitto()),
        Ok("mosquitto") => assert!(broker.is_mosquitto()),
        _ => {}
    }
    assert_ne!(broker.port(), 1883);
    assert_eq!(broker.url(), format!("mqtt://127.0.0.1:{}", broker.port()));
    delivers_retained_live_and_large_messages(&broker).await;
}

#[tokio::test]
async fn subscriber_recovers_when_mosquitto_restarts() {
    let Some(mut broker) = mosquitto() else {
        return;
    };
    let subscriber = Subscriber::connect(&broker, &["pcm/#"]).await;
    let publisher = Subscriber::connect(&broker, &[]).await;
    publisher.publish("pcm/bridge/status", "online", true).await;
    subscriber
        .wait_for("pcm/bridge/status", WAIT, |m| m.text() == "online")
        .await;

    broker.stop();
    let refused = TcpStream::connect((Ipv4Addr::LOCALHOST, broker.port())).is_err();
    assert!(refused, "port {} still accepts after stop()", broker.port());
    // An outage long enough for both clients to fail several reconnects.
    tokio::time::sleep(Duration::from_millis(700)).await;
    broker.restart();

    // Retained, so it arrives whether the subscriber resubscribes before or after the
    // publisher is back; only a resubscription can deliver it.
    publisher.publish("pcm/bridge/status", "back", true).await;
    let back = subscriber
        .wait_for("pcm/bridge/status", WAIT, |m| m.text() == "back")
        .await;
    assert_eq!(back.topic, "pcm/bridge/status");

    publisher
        .publish("pcm/printer/1/state", "IDLE", false)
        .await;
    subscriber
        .wait_for("pcm/printer/1/state", WAIT, |m| m.text() == "IDLE")
        .await;
    // The restarted broker kept nothing: "online" was not delivered again.
    let statuses: Vec<_> = subscriber
        .on("pcm/bridge/status")
        .iter()
        .map(|m| m.text())
        .collect();
    assert_eq!(statuses, ["online", "back"]);
}

#[tokio::test]
async fn wait_for_lists_what_it_saw_when_nothing_matches() {
    let broker = TestBroker::start();
    let subscriber = Arc::new(Subscriber::connect(&broker, &["pcm/#"]).await);
    subscriber
        .publish("pcm/printer/1/state", "IDLE", false)
        .await;
    subscriber.publish("pcm/printer/1/job", "{}", false).await;
    subscriber
        .wait_for("pcm/printer/1/job", WAIT, |_| true)
        .await;

    let waiting = subscriber.clone();
    let failure = tokio::spawn(async move {
        waiting
            .wait_for("pcm/printer/1/state", Duration::from_millis(200), |m| {
                m.text() == "PRINTING"
            })
            .await
    })
    .await
    .expect_err("wait_for should panic");
    let message = *failure.into_panic().downcast::<String>().unwrap();

    assert!(
        message.contains("no message on `pcm/printer/1/state` matched within 200ms; 1 seen on it"),
        "{message}"
    );
    assert!(message.contains("[0] retain=false \"IDLE\""), "{message}");
    assert!(message.contains("\"pcm/printer/1/job\""), "{message}");
}

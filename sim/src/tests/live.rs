//! The live channel (`/mqtt`) with a real MQTT client over a websocket.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode, Transport,
};

use super::{Server, TOKEN, start};
use crate::{PrinterSpec, STATIC_TOKEN_ACCOUNT_ID, SimOptions};

async fn server() -> Server {
    start(SimOptions {
        token: Some(TOKEN.into()),
        ..Default::default()
    })
    .await
}

fn client(server: &Server, user: &str, password: &str) -> (AsyncClient, EventLoop) {
    let url = format!("{}/mqtt", server.base.replace("http://", "ws://"));
    let port = url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut opts = MqttOptions::new("sim-test", url, port);
    opts.set_transport(Transport::Ws);
    opts.set_credentials(user, password);
    AsyncClient::new(opts, 16)
}

/// Polls until `f` returns something (or the connection fails: `Err`), within 10 s.
async fn until<T>(
    events: &mut EventLoop,
    mut f: impl FnMut(&Packet) -> Option<T>,
) -> Result<T, rumqttc::ConnectionError> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(p) = events.poll().await? {
                if let Some(t) = f(&p) {
                    return Ok(t);
                }
            }
        }
    })
    .await
    .expect("within 10 s")
}

#[tokio::test]
async fn only_the_account_id_with_a_valid_token_gets_in() {
    let server = server().await;
    let account = STATIC_TOKEN_ACCOUNT_ID.to_string();
    for (user, password) in [("12345", TOKEN), (account.as_str(), "wrong")] {
        let (_c, mut events) = client(&server, user, password);
        let e = until(&mut events, |_| Some(())).await.expect_err("refused");
        assert!(
            matches!(
                e,
                rumqttc::ConnectionError::ConnectionRefused(
                    ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
                )
            ),
            "{user}/{password}: {e:?}"
        );
    }
    let (_c, mut events) = client(&server, &account, TOKEN);
    until(&mut events, |p| {
        matches!(p, Packet::ConnAck(_)).then_some(())
    })
    .await
    .expect("accepted");
    let stats = server.sim.live_stats();
    assert_eq!((stats.connects_ok, stats.connects_refused), (1, 2));
    assert_eq!(stats.tokens_accepted, vec![TOKEN.to_string()]);
}

#[tokio::test]
async fn one_printer_at_a_time_its_retained_tree_then_its_changes() {
    let server = server().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("Live"));
    server.sim.set_live_period(Duration::from_millis(100));
    let job = server.sim.start_job(&uuid, "a.gcode", 1000, &[]);
    server.sim.set_progress(&uuid, 12.0);
    let (c, mut events) = client(&server, &STATIC_TOKEN_ACCOUNT_ID.to_string(), TOKEN);
    c.subscribe("v1/devices/#", QoS::AtMostOnce).await.unwrap();
    let codes = until(&mut events, |p| match p {
        Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(codes, vec![SubscribeReasonCode::Failure]);

    let prefix = format!("v1/devices/printers/{uuid}/");
    c.subscribe(format!("{prefix}#"), QoS::AtMostOnce)
        .await
        .unwrap();
    let mut seen = std::collections::BTreeMap::new();
    until(&mut events, |p| {
        if let Packet::Publish(m) = p {
            assert!(m.retain, "the first values are retained: {m:?}");
            let topic = m
                .topic
                .strip_prefix(&prefix)
                .expect("this printer")
                .to_string();
            seen.insert(topic, String::from_utf8_lossy(&m.payload).into_owned());
        }
        seen.contains_key(&format!("jobs/{job}/data/time-remaining"))
            .then_some(())
    })
    .await
    .unwrap();
    assert_eq!(seen["data/state"], "PRINTING");
    assert_eq!(seen["data/online"], "1");
    assert_eq!(seen["data/current-job"], job.to_string());
    assert_eq!(seen["data/job-progress"], "12");
    assert_eq!(seen[&format!("jobs/{job}/data/state")], "PRINTING");
    assert!(seen.contains_key("data/temp/nozzle/current"), "{seen:?}");
    assert_eq!(server.sim.live_subscriptions().get(&uuid), Some(&1));

    server.sim.set_progress(&uuid, 40.0);
    let progress = until(&mut events, |p| match p {
        Packet::Publish(m) if m.topic == format!("{prefix}data/job-progress") => {
            Some((m.retain, String::from_utf8_lossy(&m.payload).into_owned()))
        }
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(progress, (false, "40".to_string()));

    server
        .sim
        .set_dialog(&uuid, Some(serde_json::json!({"title": "Filament runout"})));
    let dialog = until(&mut events, |p| match p {
        Packet::Publish(m) if m.topic == format!("{prefix}dialog") => {
            Some(serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap())
        }
        _ => None,
    })
    .await
    .unwrap();
    assert_eq!(dialog["title"], "Filament runout");

    server.sim.drop_live_connections();
    let e = until(&mut events, |_| None::<()>)
        .await
        .expect_err("dropped");
    assert!(
        !matches!(e, rumqttc::ConnectionError::ConnectionRefused(_)),
        "{e:?}"
    );
    assert_eq!(server.sim.live_stats().sessions_dropped, 1);

    server.sim.set_live_enabled(false);
    let e = until(&mut events, |_| None::<()>)
        .await
        .expect_err("switched off");
    assert!(format!("{e:?}").contains("503"), "{e:?}");
}

#[tokio::test]
async fn an_offline_printers_values_stay_retained_as_it_last_sent_them() {
    let server = server().await;
    let uuid = server.sim.add_printer(PrinterSpec::named("Away"));
    server.sim.start_job(&uuid, "a.gcode", 1000, &[]);
    server
        .sim
        .set_dialog(&uuid, Some(serde_json::json!({"title": "Filament runout"})));
    server.sim.set_online(&uuid, false);
    // Gone from Connect's list while the printer is away; the broker never heard of it.
    server.sim.set_dialog(&uuid, None);
    server.sim.set_progress(&uuid, 50.0);

    let (c, mut events) = client(&server, &STATIC_TOKEN_ACCOUNT_ID.to_string(), TOKEN);
    let prefix = format!("v1/devices/printers/{uuid}/");
    c.subscribe(format!("{prefix}#"), QoS::AtMostOnce)
        .await
        .unwrap();
    let mut seen = std::collections::BTreeMap::new();
    until(&mut events, |p| {
        if let Packet::Publish(m) = p {
            assert!(m.retain, "replayed values are retained: {m:?}");
            let topic = m.topic.strip_prefix(&prefix).expect("this printer");
            seen.insert(
                topic.to_string(),
                String::from_utf8_lossy(&m.payload).into_owned(),
            );
        }
        (seen.contains_key("dialog") && seen.contains_key("data/online")).then_some(())
    })
    .await
    .unwrap();
    let dialog: serde_json::Value = serde_json::from_str(&seen["dialog"]).unwrap();
    assert_eq!(dialog["title"], "Filament runout");
    assert_eq!(seen["data/state"], "ATTENTION");
    assert_eq!(seen["data/online"], "0");
    assert_eq!(seen["data/job-progress"], "0");
}

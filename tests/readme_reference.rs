//! Keeps README.md's topic and payload reference in step with what the gateway publishes: a
//! print that fails and a command, then every topic and every JSON key seen on the broker is
//! compared with the README's table and examples (both ways).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::broker::{Subscriber, TestBroker};
use common::gateway::{BASE, Gateway, Sim, config, spoolman};
use prusa_connect_mqtt::payloads::StatePayload;
use prusa_connect_sim::PrinterSpec;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);
const README: &str = include_str!("../README.md");

/// The README's topic table: (topic pattern, payload cell).
fn topic_table() -> Vec<(String, String)> {
    let start = README
        .find("| topic | retained | payload |")
        .expect("the README has the topic table");
    README[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_string(), cells[3].to_string())
        })
        .collect()
}

/// Every `"quoted"` word in `text`.
fn quoted(text: &str) -> BTreeSet<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .filter(|w| !w.is_empty() && !w.contains(' '))
        .collect()
}

/// Every key of `v`, at any depth.
fn keys(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                out.insert(k.clone());
                out.extend(keys(v));
            }
        }
        Value::Array(a) => a.iter().for_each(|v| out.extend(keys(v))),
        _ => {}
    }
    out
}

fn top_keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The JSON block that follows `heading` in the README.
fn json_after(heading: &str) -> Value {
    let at = README.find(heading).expect(heading);
    let block = &README[at..];
    let start = block.find("```json").expect("a json block") + "```json".len();
    let end = block[start..].find("```").unwrap() + start;
    serde_json::from_str(&block[start..end]).expect("the README's example is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_topic_reference_matches_what_is_published() {
    let broker = TestBroker::start();
    let sim = Sim::start().await;
    let uuid = sim.sim.add_printer(PrinterSpec::named("Busy MK4"));
    let dir = tempfile::tempdir().unwrap();
    // With Spoolman: its topic, `P/state`'s spool fields and `bridge/info`'s part are checked.
    let (spoolman, spoolman_url) = spoolman().await;
    let spool = spoolman.add_spool("Polymaker", "PolyTerra Charcoal Black", "PLA", 1000.0);
    let sub = Subscriber::connect(&broker, &[&format!("{BASE}/#")]).await;
    let extra = format!("[spoolman]\nurl = \"{spoolman_url}\"");
    let gateway = Gateway::start(config(&broker, &sim, dir.path(), &extra));
    let p = format!("{BASE}/busy_mk4");
    sub.wait_for(&format!("{p}/state"), WAIT, |m| m.json()["state"] == "IDLE")
        .await;
    sub.publish(&format!("{p}/spool"), spool.to_string(), true)
        .await;
    sub.wait_for(&format!("{p}/state"), WAIT, |m| {
        m.json()["spool_remaining_g"] == 1000.0
    })
    .await;
    sim.sim.start_job(&uuid, "cube.bgcode", 600, &["A", "B"]);
    sub.wait_for(&format!("{p}/job"), WAIT, |m| {
        m.json()["cancelable_objects"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    })
    .await;
    sub.publish(
        &format!("{p}/command"),
        r#"{"command": "PAUSE_PRINT"}"#,
        false,
    )
    .await;
    sub.wait_for(&format!("{p}/command/response"), WAIT, |_| true)
        .await;
    sim.sim.finish_job(&uuid, "FIN_ERROR");
    let finished = sub
        .wait_for(&format!("{p}/job/finished"), WAIT, |_| true)
        .await
        .json();
    sub.wait_for(&format!("{p}/event"), WAIT, |_| true).await;
    // Connect makes a notification of the failed print.
    let notification = sub
        .wait_for(&format!("{BASE}/bridge/notification"), WAIT, |_| true)
        .await
        .json();
    gateway.stop().await;

    let table = topic_table();
    let patterns: BTreeSet<String> = table.iter().map(|(t, _)| t.clone()).collect();
    let seen: BTreeSet<String> = sub
        .messages()
        .iter()
        .map(|m| {
            m.topic
                .replacen(&format!("{BASE}/"), "B/", 1)
                .replacen("B/busy_mk4/", "B/P/", 1)
        })
        .map(|t| match t.strip_prefix("B/P/camera/") {
            Some(id) if id.chars().all(|c| c.is_ascii_digit()) => {
                "B/P/camera/<camera_id>".to_string()
            }
            _ => t,
        })
        .collect();
    // Inputs are never published by the gateway; everything else must have been seen.
    let inputs = [
        "B/P/command",
        "B/P/job/reason",
        "B/P/print_file",
        "B/P/spool",
    ];
    for pattern in &patterns {
        if !inputs.contains(&pattern.as_str()) {
            assert!(
                seen.contains(pattern),
                "README lists {pattern}, never published"
            );
        }
    }
    for topic in &seen {
        assert!(
            patterns.contains(topic),
            "{topic} is published but missing from the README's table"
        );
    }

    // Payload keys: the table's JSON cells and the examples, against the last payloads.
    let last = |topic: &str| {
        sub.on(&format!("{BASE}/{topic}"))
            .iter()
            .rev()
            .find(|m| !m.payload.is_empty())
            .map(|m| m.json())
            .unwrap()
    };
    let cell = |pattern: &str| {
        table
            .iter()
            .find(|(t, _)| t == pattern)
            .map(|(_, c)| quoted(c))
            .unwrap()
    };
    for (pattern, actual) in [
        ("B/bridge/info", last("bridge/info")),
        ("B/P/job/finished", finished),
        ("B/bridge/notification", notification),
    ] {
        assert_eq!(cell(pattern), keys(&actual), "keys of {pattern}");
    }
    // The totals: their top-level keys (the materials are the filament's own names).
    for (pattern, topic) in [
        ("B/P/stats", "busy_mk4/stats"),
        ("B/bridge/stats", "bridge/stats"),
    ] {
        assert_eq!(cell(pattern), top_keys(&last(topic)), "keys of {pattern}");
    }
    let state = last("busy_mk4/state");
    let documented = top_keys(&json_after("`B/P/state`:"));
    assert_eq!(documented, top_keys(&state), "keys of B/P/state");
    // The typed payload discovery's templates are checked against is the documented one.
    assert_eq!(
        documented,
        StatePayload::keys().into_iter().collect::<BTreeSet<_>>(),
        "keys of StatePayload"
    );
    let job_doc = README
        .lines()
        .skip_while(|l| !l.starts_with("`B/P/job`:"))
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        quoted(&job_doc),
        keys(&last("busy_mk4/job")),
        "keys of B/P/job"
    );
}

/// Every file and folder the README's Development section names is there: the layout it
/// draws and the "where a new thing goes" list move with the code.
#[test]
fn the_development_sections_paths_exist() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let section = readme
        .split("\n## Development")
        .nth(1)
        .expect("a Development section");
    let mut checked = 0;
    for word in section.split(|c: char| c.is_whitespace() || "`(),;:*".contains(c)) {
        let path = word.trim_end_matches('.');
        if !(path.starts_with("src/") || path.starts_with("sim/")) || path.contains("...") {
            continue;
        }
        assert!(
            std::path::Path::new(root).join(path).exists(),
            "the README names {path}, which does not exist"
        );
        checked += 1;
    }
    assert!(checked > 20, "only {checked} paths found");
}

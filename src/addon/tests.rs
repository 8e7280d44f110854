use std::collections::BTreeSet;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use yaml_rust::{Yaml, YamlLoader};

use super::*;
use crate::config::DiscoveryMode;

const PASSWORD: &str = "pw-from-the-supervisor";

fn mosquitto_answer() -> Value {
    json!({
        "result": "ok",
        "data": {
            "addon": "core_mosquitto",
            "host": "core-mosquitto",
            "port": 1883,
            "ssl": false,
            "username": "addons",
            "password": PASSWORD,
            "protocol": "3.1.1"
        }
    })
}

fn broker() -> Broker {
    broker_from_answer(200, mosquitto_answer().to_string().as_bytes()).unwrap()
}

fn error_of(options: Value) -> String {
    format!("{:#}", config_from(&options, &broker()).unwrap_err())
}

#[test]
fn the_options_and_the_supervisors_broker_make_the_config() {
    let options = json!({
        "base_topic": "printers",
        "discovery_mode": "entity",
        "poll_interval": 60,
        "active_poll_interval": 3,
        "printers": ["MK4", " ", "Core One"],
        "commands_allow": ["PAUSE_PRINT", "START_PRINT"],
        "live": true,
        "log_level": "debug",
        "spoolman_url": " http://homeassistant.local:7912 "
    });
    let config = config_from(&options, &broker()).unwrap();
    assert_eq!(config.mqtt.base_topic, "printers");
    assert_eq!(config.homeassistant.mode, DiscoveryMode::Entity);
    assert_eq!(config.connect.poll_interval, Duration::from_secs(60));
    assert_eq!(config.connect.active_poll_interval, Duration::from_secs(3));
    assert_eq!(config.connect.printers, ["MK4", "Core One"]);
    assert_eq!(config.commands.allow, ["PAUSE_PRINT", "START_PRINT"]);
    assert!(config.connect.live);
    assert_eq!(config.log.level, "debug");
    assert_eq!(
        config.spoolman.url.as_deref(),
        Some("http://homeassistant.local:7912")
    );
    // Fixed by add-on mode.
    assert_eq!(config.state.dir, Path::new("/data"));
    assert_eq!(config.mqtt.url, "mqtt://core-mosquitto:1883");
    assert_eq!(config.mqtt.username.as_deref(), Some("addons"));
    assert_eq!(
        config.mqtt.password.as_ref().map(|p| p.expose_secret()),
        Some(PASSWORD)
    );
    // The login page, behind ingress only.
    assert_eq!(
        config.web.listen,
        Some(format!("0.0.0.0:{INGRESS_PORT}").parse().unwrap())
    );
    assert!(config.web.ingress);
    assert!(config.web.password.is_none());
    // Everything else keeps its default.
    let defaults = Config::from_toml("").unwrap();
    assert_eq!(config.connect.url, defaults.connect.url);
    assert_eq!(config.mqtt.client_id, defaults.mqtt.client_id);
    assert!(config.homeassistant.enabled);
}

#[test]
fn missing_and_unknown_options_leave_the_defaults() {
    let config = config_from(
        &json!({"a_later_option": [1, 2], "printers": null}),
        &broker(),
    )
    .unwrap();
    let defaults = Config::from_toml("").unwrap();
    assert_eq!(config.mqtt.base_topic, defaults.mqtt.base_topic);
    assert_eq!(config.connect.poll_interval, defaults.connect.poll_interval);
    assert_eq!(config.commands.allow, defaults.commands.allow);
    assert!(config.connect.printers.is_empty());
}

#[test]
fn a_bad_option_is_named() {
    for (options, needle) in [
        (
            json!({"poll_interval": "soon"}),
            "add-on option `poll_interval` must be a whole number",
        ),
        (json!({"active_poll_interval": 0}), "`active_poll_interval`"),
        (
            json!({"discovery_mode": "both"}),
            "`discovery_mode` must be device or entity",
        ),
        (json!({"live": "yes"}), "`live` must be true or false"),
        (
            json!({"log_level": "loud"}),
            "`log_level` must be error, warn",
        ),
        (json!({"printers": "MK4"}), "`printers` must be a list"),
        (
            json!({"commands_allow": ["pause"]}),
            "`commands_allow` must be a list of command names",
        ),
        (json!({"base_topic": 7}), "`base_topic` must be text, not 7"),
        // Checked by the config's own validation, reported under the option's name.
        (json!({"base_topic": "a/#"}), "add-on option `base_topic`: "),
        (json!(["base_topic"]), "not a JSON object but a list"),
    ] {
        let message = error_of(options.clone());
        assert!(message.contains(needle), "{options}: {message}");
        assert!(!message.contains(PASSWORD), "{message}");
    }
}

#[test]
fn the_supervisors_answer_gives_the_broker() {
    let b = broker();
    assert_eq!(
        (b.host.as_str(), b.port, b.ssl, b.username.as_deref()),
        ("core-mosquitto", 1883, false, Some("addons"))
    );
    // A port as text, TLS, an IPv6 host, no credentials.
    let b = broker_from_answer(
        200,
        br#"{"result":"ok","data":{"host":"fd00::5","port":"8884","ssl":true}}"#,
    )
    .unwrap();
    assert_eq!(b.url(), "mqtts://[fd00::5]:8884");
    assert!(b.username.is_none() && b.password.is_none());
    let config = config_from(&json!({}), &b).unwrap();
    assert_eq!(config.mqtt.url, "mqtts://[fd00::5]:8884");
    assert!(config.mqtt.username.is_none());
}

#[test]
fn no_mqtt_service_is_one_clear_error() {
    for (status, body) in [
        (400, r#"{"result":"error","message":"Service not enabled"}"#),
        (
            404,
            r#"{"result":"error","message":"Service does not exist"}"#,
        ),
        (200, r#"{"result":"error","message":"Service not enabled"}"#),
        (200, r#"{"result":"ok","data":{}}"#),
        (400, "not json"),
    ] {
        let message = format!(
            "{:#}",
            broker_from_answer(status, body.as_bytes()).unwrap_err()
        );
        assert!(
            message.starts_with("the Supervisor has no MQTT broker for this add-on: install and start the Mosquitto broker add-on"),
            "{status} {body}: {message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }
    let said = format!(
        "{:#}",
        broker_from_answer(
            400,
            br#"{"result":"error","message":"Service not enabled"}"#
        )
        .unwrap_err()
    );
    assert!(
        said.ends_with("(the Supervisor said: Service not enabled)"),
        "{said}"
    );
    for (status, needle) in [(401, "token"), (403, "mqtt:need"), (500, "HTTP 500")] {
        let message = format!("{:#}", broker_from_answer(status, b"{}").unwrap_err());
        assert!(message.contains(needle), "{status}: {message}");
    }
    for body in [
        r#"{"result":"ok","data":{"host":"h","port":0}}"#,
        r#"{"result":"ok","data":{"host":"h","port":70000}}"#,
        r#"{"result":"ok","data":{"host":"h","port":"x"}}"#,
    ] {
        let message = format!(
            "{:#}",
            broker_from_answer(200, body.as_bytes()).unwrap_err()
        );
        assert!(message.contains("not a port number"), "{body}: {message}");
    }
}

#[test]
fn the_brokers_password_never_prints() {
    let b = broker();
    let config = config_from(&json!({}), &b).unwrap();
    for debug in [format!("{b:?}"), format!("{config:?}")] {
        assert!(!debug.contains(PASSWORD), "{debug}");
    }
}

// --- addon/config.yaml and translations/en.yaml agree with the mapping ---

fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    to_json(&docs[0])
}

fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
        Yaml::Integer(i) => json!(i),
        Yaml::String(s) => json!(s),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.as_str().expect("text keys").to_string(), to_json(v)))
                .collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML {other:?}"),
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("a mapping").keys().cloned().collect()
}

#[test]
fn config_yaml_declares_the_options_the_mapping_reads_with_the_binarys_defaults() {
    let addon = yaml_file("addon/config.yaml");
    let ours: BTreeSet<String> = OPTIONS.iter().map(|(o, _)| o.to_string()).collect();
    assert_eq!(keys(&addon["options"]), ours);
    assert_eq!(keys(&addon["schema"]), ours);

    // Installed with its defaults, the add-on runs as the binary's defaults would.
    let config = config_from(&addon["options"], &broker()).unwrap();
    let defaults = Config::from_toml("").unwrap();
    assert_eq!(config.mqtt.base_topic, defaults.mqtt.base_topic);
    assert_eq!(config.homeassistant.mode, defaults.homeassistant.mode);
    assert_eq!(config.connect.poll_interval, defaults.connect.poll_interval);
    assert_eq!(
        config.connect.active_poll_interval,
        defaults.connect.active_poll_interval
    );
    assert_eq!(config.connect.printers, defaults.connect.printers);
    assert_eq!(config.commands.allow, defaults.commands.allow);
    assert_eq!(config.connect.live, defaults.connect.live);
    assert_eq!(config.log.level, defaults.log.level);
    assert_eq!(config.spoolman.url, defaults.spoolman.url);

    // Every value the schema lets the Configuration tab save is one the mapping takes.
    for (option, rule) in addon["schema"].as_object().unwrap() {
        let samples: Vec<Value> = match rule {
            Value::String(r) if r == "str" => vec![json!("farm")],
            // Spoolman's address: off when empty.
            Value::String(r) if r == "str?" => {
                vec![json!(""), json!("http://a0d7b954-spoolman:7912")]
            }
            Value::String(r) if r == "bool" => vec![json!(true), json!(false)],
            Value::String(r) if r.starts_with("list(") => r[5..r.len() - 1]
                .split('|')
                .map(|alternative| json!(alternative))
                .collect(),
            Value::String(r) if r.starts_with("int(") => r[4..r.len() - 1]
                .split(',')
                .map(|bound| json!(bound.parse::<u64>().unwrap()))
                .collect(),
            Value::Array(item) if item == &[json!("str")] => {
                vec![json!([]), json!(["MK4", "c0ffee-uuid"])]
            }
            Value::Array(item) if item == &[json!("match(^[A-Z0-9_]+$)")] => {
                vec![json!(["START_PRINT", "SET_JOB_REASON", "G_CODE_2"])]
            }
            other => panic!("schema of `{option}`: no sample for {other}"),
        };
        for sample in samples {
            let options = json!({ option.as_str(): sample });
            if let Err(e) = config_from(&options, &broker()) {
                panic!("{options} fits the schema {rule} but is refused: {e:#}");
            }
        }
    }
    assert!(!is_command_name("pause") && !is_command_name("A-B") && !is_command_name(""));

    assert_eq!(addon["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(addon["arch"], json!(["amd64", "aarch64", "armv7"]));
    assert_eq!(addon["services"], json!(["mqtt:need"]));
    assert_eq!(addon["ingress"], true);
    assert_eq!(addon["ingress_port"], INGRESS_PORT);
    assert_eq!(addon["init"], false);
}

#[test]
fn every_option_has_a_name_and_a_description() {
    let translations = yaml_file("addon/translations/en.yaml");
    let configuration = &translations["configuration"];
    let ours: BTreeSet<String> = OPTIONS.iter().map(|(o, _)| o.to_string()).collect();
    assert_eq!(keys(configuration), ours);
    for (option, text) in configuration.as_object().unwrap() {
        for field in ["name", "description"] {
            let value = text[field].as_str().unwrap_or_default();
            assert!(!value.trim().is_empty(), "{option}.{field}");
        }
    }
}

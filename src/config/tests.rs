use std::path::Path;

use super::*;

#[test]
fn broker_urls() {
    assert_eq!(
        BrokerAddress::parse("mqtt://localhost:1883").unwrap(),
        BrokerAddress {
            host: "localhost".into(),
            port: 1883,
            tls: false
        }
    );
    assert_eq!(BrokerAddress::parse("mqtts://broker").unwrap().port, 8883);
    assert_eq!(
        BrokerAddress::parse("mqtt://[::1]:1884").unwrap().host,
        "::1"
    );
    assert!(BrokerAddress::parse("http://x").is_err());
    assert!(BrokerAddress::parse("localhost:1883").is_err());
}

#[test]
fn example_config_parses_to_the_defaults() {
    let text = include_str!("../../config.example.toml");
    let parsed = Config::from_toml(text).expect("config.example.toml parses");
    let defaults = Config::from_toml("").unwrap();
    // The example documents every key with its default value.
    assert_eq!(format!("{parsed:?}"), format!("{defaults:?}"));
}

#[test]
fn unknown_key_is_named() {
    let err = Config::from_toml("[connect]\npoll_intervall = \"5s\"\n").unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("poll_intervall"), "{msg}");
    assert!(msg.contains("connect"), "{msg}");
}

#[test]
fn bad_duration_is_named() {
    let err = Config::from_toml("[connect]\npoll_interval = \"soon\"\n").unwrap_err();
    assert!(
        format!("{err:#}").contains("connect.poll_interval"),
        "{err:#}"
    );
}

#[test]
fn a_password_in_the_broker_url_is_never_echoed() {
    let err = Config::from_toml("[mqtt]\nurl = \"mqtt://u:hunter2@host:99999\"\n").unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("mqtt.url") && !msg.contains("hunter2"),
        "{msg}"
    );
    assert_eq!(redact_url("mqtts://a:b@h:1"), "mqtts://a:***@h:1");
    assert_eq!(redact_url("mqtt://h:1"), "mqtt://h:1");
}

#[test]
fn bad_values_are_explained() {
    for (toml, needle) in [
        ("[mqtt]\nurl = \"http://x\"\n", "mqtt.url"),
        ("[mqtt]\nbase_topic = \"a/#\"\n", "mqtt.base_topic"),
        ("[connect]\nurl = \"not a url\"\n", "connect.url"),
        (
            "[connect]\npoll_interval = \"0s\"\n",
            "connect.poll_interval",
        ),
        ("[homeassistant]\nmode = \"both\"\n", "homeassistant.mode"),
        ("[log]\nlevel = \"loud!!\"\n", "log.level"),
        // Issue 22 (1, 2): no two printers on one id, none on the bridge's topics.
        (
            "[mqtt.printer_ids]\nMK4 = \"left\"\n\"Core One\" = \"left\"\n",
            "gives \"left\" to both \"Core One\" and \"MK4\"",
        ),
        (
            "[mqtt.printer_ids]\nMK4 = \"bridge\"\n",
            "mqtt.printer_ids.\"MK4\" = \"bridge\" is taken by the gateway's own topics",
        ),
        (
            "[connect]\naccess_token = \"a\"\nrefresh_token = \"r\"\n",
            "connect.access_token and connect.refresh_token are all set",
        ),
        ("[web]\nlisten = \"localhost\"\n", "web.listen"),
        (
            "[web]\ningress = true\n",
            "web.ingress is set but web.listen is not",
        ),
        (
            "[web]\nlisten = \"127.0.0.1:8099\"\npassword = \" \"\n",
            "web.password must not be empty",
        ),
        (
            "[spoolman]\nurl = \"spoolman:7912\"\n",
            "spoolman.url = \"spoolman:7912\" must be http://host:port",
        ),
        (
            "[spoolman]\nurl = \"http//x\"\n",
            "spoolman.url = \"http//x\" is not a URL",
        ),
        (
            "[spoolman]\nurl = \"http://s:7912\"\ninterval = \"0s\"\n",
            "spoolman.interval must be longer than 0s",
        ),
        ("[spoolman]\nuri = \"http://s:7912\"\n", "uri"),
    ] {
        let err = Config::from_toml(toml).unwrap_err();
        assert!(format!("{err:#}").contains(needle), "{toml}: {err:#}");
    }
}

#[test]
fn secrets_come_from_files_and_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    std::fs::write(&path, "hunter2\n").unwrap();
    let toml = format!(
        "[mqtt]\npassword_file = {:?}\n[connect]\naccess_token = \"tok-secret\"\n",
        path
    );
    let config = Config::from_toml(&toml).unwrap();
    assert_eq!(
        config.mqtt.password.as_ref().unwrap().expose_secret(),
        "hunter2"
    );
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(!debug.contains("tok-secret"), "{debug}");
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
fn environment_overrides_file() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("c.toml", "[connect]\npoll_interval = \"10s\"\n")?;
        jail.set_env("PRUSA_CONNECT_MQTT__CONNECT__POLL_INTERVAL", "7s");
        jail.set_env("PRUSA_CONNECT_MQTT__MQTT__BASE_TOPIC", "farm");
        let config = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(config.connect.poll_interval, Duration::from_secs(7));
        assert_eq!(config.mqtt.base_topic, "farm");
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
fn config_path_from_the_environment_is_used_when_present() {
    figment::Jail::expect_with(|jail| {
        // The container image's setup: PRUSA_CONNECT_MQTT_CONFIG=/data/config.toml and
        // the state directory from the environment.
        jail.set_env("PRUSA_CONNECT_MQTT__STATE__DIR", "/data");
        jail.set_env(CONFIG_PATH_ENV, "absent.toml");
        let config = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(config.state.dir, Path::new("/data"));
        assert_eq!(config.mqtt.base_topic, "prusa_connect");

        jail.create_file("present.toml", "[mqtt]\nbase_topic = \"farm\"\n")?;
        jail.set_env(CONFIG_PATH_ENV, "present.toml");
        let config = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(config.mqtt.base_topic, "farm");
        assert_eq!(config.state.dir, Path::new("/data"));
        Ok(())
    });
}

#[test]
fn the_request_budget_is_checked() {
    let c = Config::from_toml("").unwrap();
    assert_eq!(c.connect.max_requests_per_second, 5.0);
    assert_eq!(c.connect.request_burst, 20);
    for (toml, key) in [
        (
            "max_requests_per_second = -1.0",
            "connect.max_requests_per_second",
        ),
        (
            "max_requests_per_second = nan",
            "connect.max_requests_per_second",
        ),
        ("request_burst = 0", "connect.request_burst"),
    ] {
        let err = Config::from_toml(&format!("[connect]\n{toml}\n")).unwrap_err();
        assert!(format!("{err:#}").contains(key), "{toml}: {err:#}");
    }
    let off = Config::from_toml("[connect]\nmax_requests_per_second = 0\n").unwrap();
    assert_eq!(off.connect.max_requests_per_second, 0.0);
}

#[test]
fn a_shard_is_checked_and_gives_its_own_state_folder_and_client_id() {
    let err = Config::from_toml("[connect]\nshard = \"4/3\"\n").unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("connect.shard") && msg.contains("\"k/n\""),
        "{msg}"
    );
    let c = Config::from_toml("[connect]\nshard = \"2/3\"\n[state]\ndir = \"/s\"\n").unwrap();
    assert_eq!(c.state_dir(), Path::new("/s/shard-2"));
    assert_eq!(c.mqtt_for_instance().client_id, "prusa-connect-mqtt-2");
    let plain = Config::from_toml("[state]\ndir = \"/s\"\n").unwrap();
    assert_eq!(plain.state_dir(), Path::new("/s"));
    assert_eq!(plain.mqtt_for_instance().client_id, "prusa-connect-mqtt");
}

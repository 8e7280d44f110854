//! The gateway binary as a process of its own (for signals: SIGTERM, SIGKILL).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::broker::TestBroker;
use super::gateway::{BASE, Sim, TOKEN};

/// The MQTT client id of the gateway processes of this test binary.
pub fn client_id() -> String {
    format!("process-{}", std::process::id())
}

/// A gateway process, killed when dropped: a test that fails (panics) leaves none running.
pub struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The gateway binary with a config for `broker` and `sim`, logging to a file in `dir`.
pub fn spawn(broker: &TestBroker, sim: &Sim, dir: &Path, env: &[(&str, String)]) -> Running {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[connect]
url = "{}"
access_token = "{TOKEN}"
poll_interval = "200ms"
active_poll_interval = "150ms"
request_timeout = "10s"
max_requests_per_second = 0
[mqtt]
url = "{}"
client_id = "{}"
base_topic = "{BASE}"
[state]
dir = {:?}
"#,
            sim.url(),
            broker.url(),
            client_id(),
            dir.join("state"),
        ),
    )
    .unwrap();
    spawn_config(&config, dir, env)
}

/// The gateway binary with the config file `config`, logging to `gateway.log` in `dir`.
pub fn spawn_config(config: &Path, dir: &Path, env: &[(&str, String)]) -> Running {
    let log = std::fs::File::create(dir.join("gateway.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prusa-connect-mqtt"));
    cmd.args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Running(cmd.spawn().unwrap())
}

pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits for the process to exit, at most `limit`.
pub async fn exit_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway did not exit within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! The gateway as a process of its own for the benches: the release binary (or `GW_BIN`),
//! measured through /proc.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The gateway binary (cargo builds it for the bench), run with default poll settings.
pub struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    ticks_per_second: f64,
}

impl Gateway {
    /// Starts the gateway binary with the config `config` writes for a state dir (in a
    /// temporary directory named `prefix`...).
    pub fn start(prefix: &str, config: impl FnOnce(&Path) -> String) -> Gateway {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config(&dir.path().join("state"))).unwrap();
        let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
        // GW_BIN runs the bench against another build (an older one, for a comparison).
        let gateway_bin = std::env::var("GW_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_prusa-connect-mqtt").to_string());
        let child = Command::new(gateway_bin)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run the gateway binary");
        let ticks = Command::new("getconf").arg("CLK_TCK").output().ok();
        let ticks_per_second = ticks
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0);
        Gateway {
            child,
            dir,
            ticks_per_second,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn proc(&self, file: &str) -> String {
        std::fs::read_to_string(PathBuf::from(format!("/proc/{}/{file}", self.child.id())))
            .unwrap_or_default()
    }

    /// utime + stime of the gateway process.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = self.proc("stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
        (field(11) + field(12)) / self.ticks_per_second
    }

    pub fn peak_rss_kb(&self) -> u64 {
        self.status_kb("VmHWM:")
    }

    pub fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS:")
    }

    fn status_kb(&self, field: &str) -> u64 {
        self.proc("status")
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGTERM, as systemd stops it; killed if it takes longer than 10 s.
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("the gateway did not stop within 10 s after SIGTERM: killed");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

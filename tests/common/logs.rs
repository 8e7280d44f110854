//! Captures every log line of the test process (the gateway runs in-process) for tests that
//! assert on the log. The subscriber is global: one capturing test binary per level.

#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The gateway's log lines written since `from` (a [`Captured::len`]).
    pub fn lines_since(&self, from: usize) -> Vec<String> {
        let bytes = self.0.lock().unwrap()[from..].to_vec();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains("prusa_connect_mqtt"))
            .map(str::to_string)
            .collect()
    }
}

/// The capture at `level` and above, installed as the global subscriber on first use. The
/// simulator stands in for the cloud: its logs are not the gateway's and are left out.
pub fn capture(level: &str) -> &'static Captured {
    static CAPTURE: OnceLock<Captured> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let filter = tracing_subscriber::EnvFilter::new(format!("{level},prusa_connect_sim=off"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

//! The topic layout, in one place. `B` is the base topic, `P` a printer's topic id.

#[derive(Debug, Clone)]
pub struct Topics {
    base: String,
    /// Shard k's bridge topics are `B/bridge/<k>/...` (`connect.shard`).
    shard: Option<u32>,
}

impl Topics {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_string(),
            shard: None,
        }
    }

    /// The topics of the instance `config` describes: its base topic, and its shard's bridge
    /// topics.
    pub fn for_config(config: &crate::config::Config) -> Self {
        Self {
            base: config.mqtt.base_topic.clone(),
            shard: config.connect.shard.map(|s| s.k),
        }
    }

    /// The shard whose bridge topics these are, if sharded.
    pub fn shard(&self) -> Option<u32> {
        self.shard
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// What every topic of the bridge starts with (`B/bridge`).
    pub fn bridge(&self) -> String {
        match self.shard {
            Some(k) => format!("{}/bridge/{k}", self.base),
            None => format!("{}/bridge", self.base),
        }
    }
    /// What every topic of printer `p` starts with (`B/P`).
    pub fn printer(&self, p: &str) -> String {
        format!("{}/{p}", self.base)
    }
    /// `B/P/leaf`, allocated once at its length: a farm's looks make thousands a second,
    /// and `format!` took about 7 % of rendering a printer.
    fn of_printer(&self, p: &str, leaf: &str) -> String {
        let mut topic = String::with_capacity(self.base.len() + p.len() + leaf.len() + 2);
        for part in [self.base.as_str(), "/", p, "/", leaf] {
            topic.push_str(part);
        }
        topic
    }
    pub fn bridge_state(&self) -> String {
        format!("{}/state", self.bridge())
    }
    pub fn bridge_info(&self) -> String {
        format!("{}/info", self.bridge())
    }
    pub fn bridge_notification(&self) -> String {
        format!("{}/notification", self.bridge())
    }
    pub fn availability(&self, p: &str) -> String {
        self.of_printer(p, "availability")
    }
    pub fn state(&self, p: &str) -> String {
        self.of_printer(p, "state")
    }
    pub fn job(&self, p: &str) -> String {
        self.of_printer(p, "job")
    }
    pub fn event(&self, p: &str) -> String {
        self.of_printer(p, "event")
    }
    pub fn job_finished(&self, p: &str) -> String {
        self.of_printer(p, "job/finished")
    }
    /// The camera's picture as the last job ended (retained bytes).
    pub fn job_finished_picture(&self, p: &str) -> String {
        self.of_printer(p, "job/finished/picture")
    }
    /// The printer's totals (retained JSON).
    pub fn stats(&self, p: &str) -> String {
        self.of_printer(p, "stats")
    }
    /// The bridge's fleet totals (retained JSON).
    pub fn bridge_stats(&self) -> String {
        format!("{}/stats", self.bridge())
    }
    /// Input: the printer's Spoolman spool id (retained).
    pub fn spool(&self, p: &str) -> String {
        self.of_printer(p, "spool")
    }
    /// Subscription filter for every printer's `spool` topic.
    pub fn spool_filter(&self) -> String {
        format!("{}/+/spool", self.base)
    }
    /// The printer id of a `spool` topic, if `topic` is one.
    pub fn parse_spool(&self, topic: &str) -> Option<String> {
        self.printer_of(topic, "spool")
    }
    /// The current job's thumbnail (retained bytes).
    pub fn job_preview(&self, p: &str) -> String {
        self.of_printer(p, "job/preview")
    }
    /// Input: the file "Start print" prints (a file's name or path).
    pub fn print_file(&self, p: &str) -> String {
        self.of_printer(p, "print_file")
    }
    /// Subscription filter for every printer's `print_file` topic.
    pub fn print_file_filter(&self) -> String {
        format!("{}/+/print_file", self.base)
    }
    /// The printer id of a `print_file` topic, if `topic` is one.
    pub fn parse_print_file(&self, topic: &str) -> Option<String> {
        self.printer_of(topic, "print_file")
    }
    /// Device triggers: `print_started`, `print_failed`... (not retained).
    pub fn trigger(&self, p: &str) -> String {
        self.of_printer(p, "trigger")
    }
    pub fn camera(&self, p: &str, camera_id: &str) -> String {
        format!("{}/{p}/camera/{camera_id}", self.base)
    }
    pub fn command(&self, p: &str) -> String {
        self.of_printer(p, "command")
    }
    pub fn command_response(&self, p: &str) -> String {
        self.of_printer(p, "command/response")
    }
    pub fn job_reason(&self, p: &str) -> String {
        self.of_printer(p, "job/reason")
    }
    /// Subscription filter for every printer's job-reason topic.
    pub fn job_reason_filter(&self) -> String {
        format!("{}/+/job/reason", self.base)
    }
    /// The printer id of a job-reason topic, if `topic` is one.
    pub fn parse_job_reason(&self, topic: &str) -> Option<String> {
        self.printer_of(topic, "job/reason")
    }
    /// Subscription filter for every printer's command topic.
    pub fn command_filter(&self) -> String {
        format!("{}/+/command", self.base)
    }
    /// The printer id of a command topic, if `topic` is one.
    pub fn parse_command(&self, topic: &str) -> Option<String> {
        self.printer_of(topic, "command")
    }
    /// The printer id `P` of `topic` when it is `B/P/<suffix>` (one level for `P`).
    fn printer_of(&self, topic: &str, suffix: &str) -> Option<String> {
        let rest = topic.strip_prefix(&self.base)?.strip_prefix('/')?;
        let p = rest.strip_suffix(suffix)?.strip_suffix('/')?;
        (!p.is_empty() && !p.contains('/')).then(|| p.to_string())
    }
}

/// Ids the topic layout uses beside the printers' (`B/bridge/...`): no printer may have one,
/// or its state would land on the bridge's own topics.
pub const RESERVED_IDS: &[&str] = &["bridge"];

/// Whether `id` is one of [`RESERVED_IDS`].
pub fn is_reserved(id: &str) -> bool {
    RESERVED_IDS.contains(&id)
}

/// `Busy MK4` -> `busy_mk4`: lower-case ASCII letters, digits and single underscores.
pub fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        };
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("Busy MK4"), "busy_mk4");
        assert_eq!(slug("  Core One (left) "), "core_one_left");
        assert_eq!(slug("Průša"), "pr_a");
        assert_eq!(slug("+#/"), "");
    }

    #[test]
    fn command_topics_parse() {
        let t = Topics::new("prusa_connect");
        assert_eq!(
            t.parse_command("prusa_connect/mk4/command").as_deref(),
            Some("mk4")
        );
        assert_eq!(t.parse_command("prusa_connect/mk4/command/response"), None);
        assert_eq!(t.parse_command("prusa_connect//command"), None);
        assert_eq!(t.parse_command("other/mk4/command"), None);
        assert_eq!(t.parse_command("prusa_connect/a/b/command"), None);
        assert_eq!(t.parse_command("prusa_connectx/mk4/command"), None);
        assert_eq!(t.parse_command("prusa_connect/mk4xcommand"), None);
        assert_eq!(
            t.parse_job_reason("prusa_connect/mk4/job/reason")
                .as_deref(),
            Some("mk4")
        );
        assert_eq!(t.parse_job_reason("prusa_connect/job/reason"), None);
        assert_eq!(
            t.parse_print_file("prusa_connect/mk4/print_file")
                .as_deref(),
            Some("mk4")
        );
        assert_eq!(t.parse_print_file("prusa_connect/mk4/print_file/x"), None);
    }
}

//! The topic layout, in one place. `B` is the base topic, `P` a printer's topic id.

use std::collections::{BTreeMap, HashSet};

use crate::connect::model::Printer;

#[derive(Debug, Clone)]
pub struct Topics {
    base: String,
}

impl Topics {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_string(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn bridge_state(&self) -> String {
        format!("{}/bridge/state", self.base)
    }
    pub fn bridge_info(&self) -> String {
        format!("{}/bridge/info", self.base)
    }
    pub fn availability(&self, p: &str) -> String {
        format!("{}/{p}/availability", self.base)
    }
    pub fn state(&self, p: &str) -> String {
        format!("{}/{p}/state", self.base)
    }
    pub fn job(&self, p: &str) -> String {
        format!("{}/{p}/job", self.base)
    }
    pub fn event(&self, p: &str) -> String {
        format!("{}/{p}/event", self.base)
    }
    pub fn job_finished(&self, p: &str) -> String {
        format!("{}/{p}/job/finished", self.base)
    }
    pub fn camera(&self, p: &str, camera_id: &str) -> String {
        format!("{}/{p}/camera/{camera_id}", self.base)
    }
    pub fn command(&self, p: &str) -> String {
        format!("{}/{p}/command", self.base)
    }
    pub fn command_response(&self, p: &str) -> String {
        format!("{}/{p}/command/response", self.base)
    }
    pub fn job_reason(&self, p: &str) -> String {
        format!("{}/{p}/job/reason", self.base)
    }
    /// Subscription filter for every printer's job-reason topic.
    pub fn job_reason_filter(&self) -> String {
        format!("{}/+/job/reason", self.base)
    }
    /// The printer id of a job-reason topic, if `topic` is one.
    pub fn parse_job_reason(&self, topic: &str) -> Option<String> {
        let rest = topic.strip_prefix(&self.base)?.strip_prefix('/')?;
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            [p, "job", "reason"] if !p.is_empty() => Some(p.to_string()),
            _ => None,
        }
    }
    /// Subscription filter for every printer's command topic.
    pub fn command_filter(&self) -> String {
        format!("{}/+/command", self.base)
    }
    /// The printer id of a command topic, if `topic` is one.
    pub fn parse_command(&self, topic: &str) -> Option<String> {
        let rest = topic.strip_prefix(&self.base)?.strip_prefix('/')?;
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            [p, "command"] if !p.is_empty() => Some(p.to_string()),
            _ => None,
        }
    }
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

/// Topic ids for a set of printers: the configured override (by uuid or name), else the slug
/// of the name; a clash or an empty slug gets a short uuid suffix. Ordered by uuid so the same
/// account gives the same ids every time.
pub fn assign_ids(
    printers: &[&Printer],
    overrides: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut sorted: Vec<&&Printer> = printers.iter().collect();
    sorted.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    let mut taken: HashSet<String> = HashSet::new();
    let mut ids = BTreeMap::new();
    // Overrides first, so a slug never steals an id the operator chose.
    for p in &sorted {
        let chosen = overrides
            .get(&p.uuid)
            .or_else(|| p.name.as_ref().and_then(|n| overrides.get(n)));
        if let Some(id) = chosen
            && taken.insert(id.clone())
        {
            ids.insert(p.uuid.clone(), id.clone());
        }
    }
    for p in &sorted {
        if ids.contains_key(&p.uuid) {
            continue;
        }
        let base = slug(p.name.as_deref().unwrap_or(""));
        let short: String = p
            .uuid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let short = &short[short.len().saturating_sub(6)..];
        let mut id = if base.is_empty() {
            format!("printer_{short}")
        } else {
            base.clone()
        };
        if taken.contains(&id) {
            id = format!("{base}_{short}");
        }
        let mut n = 2;
        while taken.contains(&id) {
            id = format!("{base}_{short}_{n}");
            n += 1;
        }
        taken.insert(id.clone());
        ids.insert(p.uuid.clone(), id);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printer(uuid: &str, name: &str) -> Printer {
        Printer {
            uuid: uuid.into(),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Busy MK4"), "busy_mk4");
        assert_eq!(slug("  Core One (left) "), "core_one_left");
        assert_eq!(slug("Průša"), "pr_a");
        assert_eq!(slug("+#/"), "");
    }

    #[test]
    fn clashes_get_uuid_suffix_and_overrides_win() {
        let a = printer("00000000-0000-4000-8000-0000000000aa", "MK4");
        let b = printer("00000000-0000-4000-8000-0000000000bb", "mk4");
        let c = printer("00000000-0000-4000-8000-0000000000cc", "###");
        let d = printer("00000000-0000-4000-8000-0000000000dd", "Left");
        let mut overrides = BTreeMap::new();
        overrides.insert("Left".to_string(), "mk4".to_string());
        let ids = assign_ids(&[&a, &b, &c, &d], &overrides);
        assert_eq!(ids[&d.uuid], "mk4");
        assert_eq!(ids[&a.uuid], "mk4_0000aa");
        assert_eq!(ids[&b.uuid], "mk4_0000bb");
        assert_eq!(ids[&c.uuid], "printer_0000cc");
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
    }
}

//! The page's HTML: pure functions of what is known (the [`Board`], the broker link, the
//! config), with every value escaped. Inline CSS and a few lines of script that reload the
//! status part; nothing is fetched from elsewhere.

use std::fmt::Write;

use serde_json::Value;

use super::board::Board;
use super::session::Notice;
use crate::config::Config;

/// How often the page reloads its status part.
const REFRESH_MS: u32 = 3000;

/// What the status part shows besides the board.
pub struct Facts<'a> {
    pub config: &'a Config,
    pub broker_connected: bool,
    /// The email of the last login, when known.
    pub account: Option<&'a str>,
    /// A refresh token is stored (someone logged in).
    pub stored: bool,
    pub now_unix: f64,
}

/// What the forms part shows.
pub struct Forms<'a> {
    pub csrf: &'a str,
    pub notice: Option<&'a Notice>,
    /// The email of a login waiting for its two-factor code.
    pub awaiting_code: Option<&'a str>,
}

pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page. Every link and form is relative: it works under any path prefix.
pub fn page(board: &Board, facts: &Facts, forms: &Forms) -> String {
    // Right after a login `bridge/info` may still say login_needed: the stored token counts
    // until Connect or the account server refuses it.
    let refused = matches!(
        auth_status(board),
        Some("refresh_token_rejected" | "access_token_rejected")
    );
    let signed_in = facts.stored && !refused;
    let mut html = String::from(concat!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<title>prusa-connect-mqtt</title><style>",
        "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:52em;padding:1em;",
        "line-height:1.4;color:#222;background:#fafafa}",
        "h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}",
        "section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em;margin:.8em 0}",
        "dl{display:grid;grid-template-columns:max-content 1fr;gap:.3em 1em;margin:0}",
        "dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}",
        ".printer{border-top:1px solid #eee;padding:.5em 0}.printer:first-child{border:0}",
        ".ok{color:#176317}.bad{color:#a11}.muted{color:#666;font-size:.9em}",
        ".notice{padding:.6em;border-radius:6px;background:#e7f4e7}",
        ".notice.error{background:#fbe3e3;color:#800}",
        "label{display:block;margin:.5em 0 .2em}",
        "input[type=email],input[type=password],input[type=text]{width:100%;box-sizing:border-box;",
        "padding:.5em;font-size:1em}",
        "button{margin-top:.8em;padding:.5em 1.2em;font-size:1em}",
        "code{font-size:.85em;overflow-wrap:anywhere}",
        "</style></head><body><h1>prusa-connect-mqtt</h1>"
    ));
    if let Some(notice) = forms.notice {
        let _ = write!(
            html,
            "<p id=\"notice\" class=\"notice{}\" role=\"status\">{}</p>",
            if notice.error { " error" } else { "" },
            esc(&notice.text)
        );
    }
    // Signed in, the status comes first; otherwise the login form.
    let status = format!("<div id=\"status\">{}</div>", status(board, facts));
    let asks_code = forms.awaiting_code.is_some();
    let forms = login_forms(forms, signed_in, facts.stored);
    if signed_in && !asks_code {
        html.push_str(&status);
        html.push_str(&forms);
    } else {
        html.push_str(&forms);
        html.push_str(&status);
    }
    let _ = write!(
        html,
        "<script>setInterval(function(){{fetch('status',{{credentials:'same-origin'}})\
         .then(function(r){{return r.ok?r.text():null}}).then(function(t){{if(t!==null)\
         document.getElementById('status').innerHTML=t}}).catch(function(){{}})}},{REFRESH_MS});\
         </script></body></html>"
    );
    html
}

fn login_forms(forms: &Forms, signed_in: bool, stored: bool) -> String {
    let csrf = format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(forms.csrf)
    );
    let mut html = String::from("<section id=\"login\">");
    if let Some(email) = forms.awaiting_code {
        let _ = write!(
            html,
            "<h2>Two-factor code</h2><p>The account {} asks for the code of its authenticator \
             app.</p><form method=\"post\" action=\"code\">{csrf}\
             <label for=\"code\">Code</label><input id=\"code\" name=\"code\" type=\"text\" \
             inputmode=\"numeric\" autocomplete=\"one-time-code\" required autofocus>\
             <button type=\"submit\">Send the code</button></form>",
            esc(email)
        );
    } else {
        let form = format!(
            "<form method=\"post\" action=\"login\">{csrf}\
             <label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" \
             autocomplete=\"username\" required>\
             <label for=\"password\">Password</label><input id=\"password\" name=\"password\" \
             type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Log in</button></form>\
             <p class=\"muted\">The password goes to the Prusa account server only and is never \
             stored; the refresh token the login yields is.</p>"
        );
        if signed_in {
            let _ = write!(
                html,
                "<details><summary>Log in with another account</summary>{form}</details>"
            );
        } else {
            let _ = write!(html, "<h2>Log in to Prusa Connect</h2>{form}");
        }
    }
    if stored {
        let _ = write!(
            html,
            "<form method=\"post\" action=\"logout\">{csrf}\
             <button type=\"submit\">Log out (forget the stored token)</button></form>"
        );
    }
    html.push_str("</section>");
    html
}

fn auth_status(board: &Board) -> Option<&str> {
    board.info.as_ref()?.pointer("/auth/status")?.as_str()
}

/// The auth state in words.
fn auth_words(board: &Board) -> (bool, String) {
    let Some(info) = &board.info else {
        return (
            false,
            "starting: waiting for the first answer from Connect".into(),
        );
    };
    let auth = &info["auth"];
    let method = auth["method"].as_str().unwrap_or("");
    let words = match auth["status"].as_str().unwrap_or("") {
        "ok" if method == "refresh_token" => "logged in; the access token renews itself",
        "ok" => "using the access token of the config",
        "login_needed" => "not logged in: log in above",
        "refresh_token_rejected" => {
            "the account server refused the stored token (revoked, unused for 30 days, or used \
             by another program): log in again"
        }
        "account_server_unreachable" => {
            "the account server cannot be reached; retrying (the current token is used while \
             it lasts)"
        }
        "access_token_rejected" => "Connect refused the access token: log in again",
        "no_credentials" => "no credentials: log in above",
        other => other,
    };
    (auth["status"] == "ok", words.to_string())
}

fn ago(now: f64, then: f64) -> String {
    let s = (now - then).max(0.0) as u64;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86400 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86400),
    }
}

fn flag(good: bool, text: &str) -> String {
    format!(
        "<span class=\"{}\">{}</span>",
        if good { "ok" } else { "bad" },
        esc(text)
    )
}

/// The status part (reloaded by the page every few seconds).
pub fn status(board: &Board, facts: &Facts) -> String {
    let mut html = String::from("<section><h2>Gateway</h2><dl>");
    sign_in_rows(&mut html, board, facts);
    connect_row(&mut html, board, facts);
    broker_row(&mut html, facts);
    live_row(&mut html, board, facts);
    html.push_str("</dl></section>");
    printers_section(&mut html, board, facts);
    html
}

/// Who is logged in, and whether signing in to Connect works.
fn sign_in_rows(html: &mut String, board: &Board, facts: &Facts) {
    let (auth_ok, words) = auth_words(board);
    let account = match (facts.account, facts.stored) {
        (Some(email), _) => esc(email),
        (None, true) => "logged in (the email is not known: logged in before this version or with \
                         the login command)"
            .into(),
        (None, false) => "nobody".into(),
    };
    let _ = write!(
        html,
        "<dt>Account</dt><dd id=\"account\">{account}</dd><dt>Sign-in</dt><dd id=\"auth\">{}",
        flag(auth_ok, &words)
    );
    if let Some(detail) = board
        .info
        .as_ref()
        .and_then(|i| i.pointer("/auth/detail"))
        .and_then(Value::as_str)
        .filter(|_| !auth_ok)
    {
        let _ = write!(html, "<br><span class=\"muted\">{}</span>", esc(detail));
    }
    html.push_str("</dd>");
}

/// Whether Connect answered, and its last error when it is not the sign-in's.
fn connect_row(html: &mut String, board: &Board, facts: &Facts) {
    let info = board.info.as_ref();
    let connect = info.map(|i| &i["connect"]);
    let reachable = connect.and_then(|c| c["reachable"].as_bool());
    let _ = write!(
        html,
        "<dt>Connect</dt><dd id=\"connect\">{} <span class=\"muted\">{}</span>",
        match reachable {
            _ if auth_status(board) == Some("login_needed") =>
                "not asked: nobody is logged in".into(),
            Some(true) => flag(true, "reachable"),
            Some(false) => flag(false, "not reachable"),
            None => "not asked yet".into(),
        },
        esc(&facts.config.connect.url)
    );
    let auth_detail = info
        .and_then(|i| i.pointer("/auth/detail"))
        .and_then(Value::as_str);
    if let Some(error) = connect
        .and_then(|c| c["last_error"].as_str())
        .filter(|e| reachable == Some(false) && Some(*e) != auth_detail)
    {
        let _ = write!(html, "<br><span class=\"muted\">{}</span>", esc(error));
    }
    html.push_str("</dd>");
}

fn broker_row(html: &mut String, facts: &Facts) {
    let _ = write!(
        html,
        "<dt>Broker</dt><dd id=\"broker\">{} <span class=\"muted\">{}</span></dd>",
        if facts.broker_connected {
            flag(true, "connected")
        } else {
            flag(false, "not connected")
        },
        esc(&crate::config::redact_url(&facts.config.mqtt.url))
    );
}

fn live_row(html: &mut String, board: &Board, facts: &Facts) {
    let live = board.info.as_ref().map(|i| &i["live"]);
    let live_words = match live {
        _ if !facts.config.connect.live => "off (connect.live = false)".to_string(),
        Some(l) if l["connected"] == true => format!(
            "connected, following {} printers",
            l["printers_subscribed"].as_u64().unwrap_or(0)
        ),
        Some(l) => format!(
            "not connected{}",
            l["last_error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        None => "starting".into(),
    };
    let _ = write!(
        html,
        "<dt>Live channel</dt><dd id=\"live\">{}</dd>",
        esc(&live_words)
    );
}

/// One card per printer `bridge/info` lists.
fn printers_section(html: &mut String, board: &Board, facts: &Facts) {
    let printers: Vec<&Value> = board
        .info
        .as_ref()
        .and_then(|i| i["printers"].as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let _ = write!(
        html,
        "<section id=\"printers\"><h2>Printers ({})</h2>",
        printers.len()
    );
    if printers.is_empty() {
        html.push_str(
            "<p class=\"muted\">None yet: they appear after the first poll that works.</p>",
        );
    }
    for p in printers {
        printer_card(html, board, facts, p);
    }
    html.push_str("</section>");
}

fn printer_card(html: &mut String, board: &Board, facts: &Facts, p: &Value) {
    let (uuid, name) = (p["uuid"].as_str().unwrap_or(""), p["name"].as_str());
    let Some(id) = p["id"].as_str() else { return };
    let name = name.unwrap_or(id);
    let row = board.printers.get(id).cloned().unwrap_or_default();
    let _ = write!(
        html,
        "<div class=\"printer\" data-id=\"{}\"><strong>{}</strong> {} <dl>\
         <dt>State</dt><dd class=\"state\">{}</dd><dt>Topic id</dt><dd><code>{}/{}</code></dd>\
         <dt>Last event</dt><dd>{}</dd>",
        esc(id),
        esc(name),
        match row.online {
            Some(true) => flag(true, "online"),
            Some(false) => flag(false, "offline"),
            None => String::new(),
        },
        esc(row.state.as_deref().unwrap_or("unknown")),
        esc(&facts.config.mqtt.base_topic),
        esc(id),
        match &row.last_event {
            Some((event, Some(at))) => format!("{} ({})", esc(event), ago(facts.now_unix, *at)),
            Some((event, None)) => esc(event),
            None => "none since the gateway started".into(),
        }
    );
    if facts.config.homeassistant.enabled {
        let ids = crate::check::entity_ids(facts.config, name, uuid, id);
        let _ = write!(
            html,
            "<dt>Home Assistant</dt><dd><details><summary>{} entities</summary><code>{}</code>\
             </details></dd>",
            ids.len(),
            ids.iter().map(|i| esc(i)).collect::<Vec<_>>().join("<br>")
        );
    }
    html.push_str("</dl></div>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Kind, Message};

    #[test]
    fn values_are_escaped_and_links_relative() {
        let config = Config::default();
        let mut board = Board::new("prusa_connect");
        board.observe(&[Message::retain(
            Kind::Data,
            "prusa_connect/bridge/info".into(),
            r#"{"printers":[{"uuid":"u1","id":"mk4","name":"<b>MK4</b>"}],
                "auth":{"method":"refresh_token","status":"login_needed"},
                "connect":{"reachable":false,"last_error":"<x>"},"live":{}}"#,
        )]);
        let facts = Facts {
            config: &config,
            broker_connected: true,
            account: Some("a\"@example.com"),
            stored: false,
            now_unix: 0.0,
        };
        let notice = Notice {
            error: true,
            text: "<script>".into(),
        };
        let forms = Forms {
            csrf: "t\"k",
            notice: Some(&notice),
            awaiting_code: None,
        };
        let html = page(&board, &facts, &forms);
        for raw in ["<b>MK4", "<script>\"", "<x>", "a\"@", "t\"k"] {
            assert!(!html.contains(raw), "{raw} unescaped");
        }
        assert!(html.contains("&lt;b&gt;MK4&lt;/b&gt;"));
        assert!(html.contains("not logged in"));
        assert!(html.contains("action=\"login\"") && !html.contains("action=\"/"));
        assert!(
            !html.contains("src=") && !html.contains("<link") && !html.contains("href="),
            "nothing is fetched"
        );
        assert!(html.contains("sensor.mk4_"), "entity ids listed");
    }
}

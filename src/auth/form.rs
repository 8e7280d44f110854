//! Just enough HTML to fill in the account server's login forms: the `<form>` elements of a
//! page with their action, method and `<input>` fields. Tolerant of any markup; never panics.

/// One `<input>` of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub name: String,
    pub kind: String,
    pub value: String,
}

/// One `<form>`: where it posts and its inputs, in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Form {
    pub action: Option<String>,
    pub method: String,
    pub inputs: Vec<Input>,
}

impl Form {
    pub fn has_input_of_kind(&self, kind: &str) -> bool {
        self.inputs.iter().any(|i| i.kind == kind)
    }

    pub fn input_named(&self, names: &[&str]) -> Option<&Input> {
        self.inputs
            .iter()
            .find(|i| names.iter().any(|n| i.name.eq_ignore_ascii_case(n)))
    }
}

/// Every form of `html`, in order. A form without `</form>` runs to the end of the page.
pub fn forms(html: &str) -> Vec<Form> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(start) = find_tag(&lower, "form", at) {
        let (attrs, body_start) = tag_attributes(html, start + "<form".len());
        let end = lower[body_start..]
            .find("</form")
            .map(|i| body_start + i)
            .unwrap_or(html.len());
        let mut form = Form {
            action: attr(&attrs, "action").map(str::to_string),
            method: attr(&attrs, "method").unwrap_or("get").to_ascii_lowercase(),
            inputs: Vec::new(),
        };
        let body = &html[body_start..end];
        let body_lower = &lower[body_start..end];
        let mut pos = 0;
        while let Some(i) = find_tag(body_lower, "input", pos) {
            let (attrs, next) = tag_attributes(body, i + "<input".len());
            if let Some(name) = attr(&attrs, "name") {
                form.inputs.push(Input {
                    name: name.to_string(),
                    kind: attr(&attrs, "type").unwrap_or("text").to_ascii_lowercase(),
                    value: attr(&attrs, "value").unwrap_or_default().to_string(),
                });
            }
            pos = next;
        }
        out.push(form);
        at = end.max(body_start);
    }
    out
}

/// The text of the first element whose class list contains one of `classes` (tags stripped),
/// e.g. Django's `errorlist`.
pub fn text_of_class(html: &str, classes: &[&str]) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let mut at = 0;
    while let Some(lt) = lower[at..].find('<').map(|i| at + i) {
        let name_end = lower[lt + 1..]
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .map(|i| lt + 1 + i)
            .unwrap_or(lower.len());
        let tag = &lower[lt + 1..name_end];
        let (attrs, after) = tag_attributes(html, name_end);
        let matches = attr(&attrs, "class").is_some_and(|c| {
            c.split_whitespace()
                .any(|c| classes.iter().any(|w| c.eq_ignore_ascii_case(w)))
        });
        if matches && !tag.is_empty() {
            let close = format!("</{tag}");
            let end = lower[after..]
                .find(&close)
                .map(|i| after + i)
                .unwrap_or(html.len());
            let text = strip_tags(&html[after..end]);
            if !text.is_empty() {
                return Some(text);
            }
        }
        at = after.max(lt + 1);
    }
    None
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    decode_entities(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Byte index of the next `<name` followed by whitespace, `>` or `/`.
fn find_tag(lower: &str, name: &str, from: usize) -> Option<usize> {
    let needle = format!("<{name}");
    let mut at = from;
    while at <= lower.len() {
        let i = lower.get(at..)?.find(&needle)? + at;
        let after = lower[i + needle.len()..].chars().next();
        if after.is_none_or(|c| c.is_whitespace() || c == '>' || c == '/') {
            return Some(i);
        }
        at = i + needle.len();
    }
    None
}

/// Parses attributes from `from` up to the closing `>`; returns them (names lower-cased,
/// values entity-decoded) and the index just after the tag.
fn tag_attributes(html: &str, from: usize) -> (Vec<(String, String)>, usize) {
    let bytes = html.as_bytes();
    let mut attrs = Vec::new();
    let mut i = from.min(bytes.len());
    loop {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        if i >= bytes.len() {
            return (attrs, bytes.len());
        }
        if bytes[i] == b'>' {
            return (attrs, i + 1);
        }
        let name_start = i;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && !matches!(bytes[i], b'=' | b'>' | b'/')
        {
            i += 1;
        }
        let name = html[name_start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < bytes.len() && matches!(bytes[i], b'"' | b'\'') {
                let quote = bytes[i];
                let start = i + 1;
                let end = bytes[start..]
                    .iter()
                    .position(|&b| b == quote)
                    .map(|p| start + p)
                    .unwrap_or(bytes.len());
                value = decode_entities(&html[start..end]);
                i = (end + 1).min(bytes.len());
            } else {
                let start = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                    i += 1;
                }
                value = decode_entities(&html[start..i]);
            }
        }
        if !name.is_empty() {
            attrs.push((name, value));
        } else if i == name_start {
            // A stray '=' or similar: skip it so the loop always advances.
            i += 1;
        }
    }
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The character references that appear in attribute values and short texts.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let entity = &rest[1..e];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => {
                    let num = entity.strip_prefix('#')?;
                    let code = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => num.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PAGE: &str = r#"<!DOCTYPE html><html><head><title>Log in</title></head><body>
<form action="/i18n/setlang/" method="post"><input type="hidden" name="language" value="cs"></form>
<FORM method=POST action="/login/?next=%2Fo%2Fauthorize%2F%3Fa%3D1&amp;b=2">
  <input type='hidden' name='csrfmiddlewaretoken' value='abc&quot;def'>
  <p class="errorlist nonfield">Please enter a correct <b>email</b> and password.</p>
  <input type="email" name="email" autofocus required>
  <input type="password" name="password"/>
  <input type=submit value="Log in">
</FORM></body></html>"#;

    #[test]
    fn finds_both_forms_with_their_fields() {
        let forms = forms(PAGE);
        assert_eq!(forms.len(), 2);
        assert_eq!(forms[0].action.as_deref(), Some("/i18n/setlang/"));
        let login = &forms[1];
        assert!(login.has_input_of_kind("password"));
        assert_eq!(login.method, "post");
        assert_eq!(
            login.action.as_deref(),
            Some("/login/?next=%2Fo%2Fauthorize%2F%3Fa%3D1&b=2")
        );
        let names: Vec<&str> = login.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["csrfmiddlewaretoken", "email", "password"]);
        assert_eq!(login.inputs[0].value, "abc\"def");
        assert_eq!(login.inputs[1].kind, "email");
    }

    #[test]
    fn reads_error_text() {
        assert_eq!(
            text_of_class(PAGE, &["errorlist"]).as_deref(),
            Some("Please enter a correct email and password.")
        );
        assert_eq!(text_of_class("<p>nothing</p>", &["errorlist"]), None);
    }

    #[test]
    fn entities() {
        assert_eq!(
            decode_entities("a&amp;b&#39;c&#x41;&bogus;&"),
            "a&b'cA&bogus;&"
        );
    }

    proptest! {
        #[test]
        fn never_panics(html in ".{0,400}") {
            let _ = forms(&html);
            let _ = text_of_class(&html, &["errorlist"]);
        }

        #[test]
        fn never_panics_on_tag_soup(parts in proptest::collection::vec(
            prop_oneof![
                Just("<form".to_string()), Just("<input".to_string()), Just(">".to_string()),
                Just("name=".to_string()), Just("\"".to_string()), Just("'".to_string()),
                Just("</form>".to_string()), Just("class=errorlist".to_string()),
                Just("&#x".to_string()), Just("é".to_string()), Just(" ".to_string()),
                Just("=".to_string()), Just("<p".to_string()), Just("/".to_string()),
            ], 0..60)) {
            let html = parts.concat();
            let _ = forms(&html);
            let _ = text_of_class(&html, &["errorlist"]);
        }
    }
}

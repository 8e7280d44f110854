//! The account server's HTML, shaped like account.prusa3d.com's Django templates: a language
//! switch form comes before the login form, so a client has to pick the form it needs.

/// `&`, `<`, `>`, `"` and `'` as entities, as Django's autoescape does.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes all but RFC 3986's unreserved characters and `/`, as Django's
/// `urlencode(safe="/")` does for `next`.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes what may not stand in a `Location` header (spaces, controls, non-ASCII),
/// leaving the rest as it is, as Django's `iri_to_uri` does.
pub(crate) fn iri_to_uri(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const LANGUAGES: &[(&str, &str)] = &[
    ("en", "English"),
    ("cs", "Čeština"),
    ("de", "Deutsch"),
    ("es", "Español"),
    ("fr", "Français"),
    ("it", "Italiano"),
    ("pl", "Polski"),
];

/// The site's frame around `content`. `csrf` is `None` on pages without forms.
fn layout(title: &str, here: &str, csrf: Option<&str>, content: &str) -> String {
    let language_switch = match csrf {
        None => String::new(),
        Some(csrf) => {
            let options: String = LANGUAGES
                .iter()
                .map(|(code, name)| {
                    let selected = if *code == "en" { " selected" } else { "" };
                    format!("\n          <option value=\"{code}\"{selected}>{name}</option>")
                })
                .collect();
            format!(
                r#"
      <form class="language-switch" action="/i18n/setlang/" method="post">
        <input type="hidden" name="csrfmiddlewaretoken" value="{csrf}">
        <input type="hidden" name="next" value="{here}">
        <select name="language" aria-label="Language">{options}
        </select>
        <button type="submit" class="btn btn-link">Change language</button>
      </form>"#,
                csrf = escape(csrf),
                here = escape(here),
            )
        }
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>{title} | Prusa Account</title>
    <link rel="icon" href="/static/img/favicon.ico">
    <link rel="stylesheet" href="/static/css/account.min.css">
  </head>
  <body class="account">
    <header class="navbar">
      <a class="navbar-brand" href="/"><img src="/static/img/prusa-account-logo.svg" alt="Prusa Account" height="32"></a>{language_switch}
    </header>
    <main class="container">
{content}
    </main>
    <footer class="footer">
      <p>&copy; Prusa Research a.s. &middot; <a href="/terms/">Terms of use</a> &middot; <a href="/privacy/">Privacy policy</a></p>
    </footer>
    <script src="/static/js/account.min.js" defer></script>
  </body>
</html>
"#,
        title = escape(title),
    )
}

fn error_list(error: Option<&str>) -> String {
    error
        .map(|e| format!("\n      <p class=\"errorlist\">{}</p>", escape(e)))
        .unwrap_or_default()
}

/// The email and password form; it posts back to `/login/?next=<next>`.
pub(crate) fn login(next: &str, csrf: &str, email: &str, error: Option<&str>) -> String {
    let action = format!("/login/?next={}", url_encode(next));
    let content = format!(
        r#"      <h1>Log in</h1>
      <p class="lead">One account for Prusa Connect, Printables and the Prusa e-shop.</p>{errors}
      <form method="post" action="{action}" class="login-form" novalidate>
        <input type="hidden" name="csrfmiddlewaretoken" value="{csrf}">
        <div class="form-group">
          <label for="id_email">Email</label>
          <input type="email" name="email" value="{email}" id="id_email" class="form-control" autocomplete="username" maxlength="254" required autofocus>
        </div>
        <div class="form-group">
          <label for="id_password">Password</label>
          <input type="password" name="password" id="id_password" class="form-control" autocomplete="current-password" required>
        </div>
        <button type="submit" class="btn btn-primary">Log in</button>
      </form>
      <p class="links"><a href="/password/reset/">Forgot your password?</a> &middot; <a href="/register/">Create an account</a></p>
      <div class="social-login">
        <a class="btn btn-outline" href="/social/login/google-oauth2/?next={next_link}">Continue with Google</a>
        <a class="btn btn-outline" href="/social/login/apple-id/?next={next_link}">Continue with Apple</a>
      </div>"#,
        errors = error_list(error),
        action = escape(&action),
        csrf = escape(csrf),
        email = escape(email),
        next_link = escape(&url_encode(next)),
    );
    layout("Log in", &action, Some(csrf), &content)
}

/// The 2FA code form; it posts back to `/login/2fa/?next=<next>`.
pub(crate) fn totp(next: &str, csrf: &str, error: Option<&str>) -> String {
    let action = format!("/login/2fa/?next={}", url_encode(next));
    let content = format!(
        r#"      <h1>Two-factor authentication</h1>
      <p class="lead">Enter the 6-digit code from your authenticator app.</p>{errors}
      <form method="post" action="{action}" class="totp-form">
        <input type="hidden" name="csrfmiddlewaretoken" value="{csrf}">
        <div class="form-group">
          <label for="id_token">Token</label>
          <input type="text" name="token" inputmode="numeric" autocomplete="one-time-code" id="id_token" class="form-control" maxlength="8" required autofocus>
        </div>
        <button type="submit" class="btn btn-primary">Verify</button>
      </form>
      <p class="links"><a href="/login/backup/?next={next_link}">Use a backup code</a> &middot; <a href="/login/?next={next_link}">Log in as someone else</a></p>"#,
        errors = error_list(error),
        action = escape(&action),
        csrf = escape(csrf),
        next_link = escape(&url_encode(next)),
    );
    layout("Two-factor authentication", &action, Some(csrf), &content)
}

/// django-oauth-toolkit's error page for a bad authorization request.
pub(crate) fn authorize_error(error: &str, description: &str) -> String {
    let content = format!(
        "      <h2>Error: {}</h2>\n      <p>{}</p>",
        escape(error),
        escape(description)
    );
    layout("Authorization error", "/o/authorize/", None, &content)
}

/// Django's CSRF failure page (403).
pub(crate) fn csrf_failure(reason: &str) -> String {
    let content = format!(
        "      <h1>Forbidden <span>(403)</span></h1>\n      <p>CSRF verification failed. Request aborted.</p>\n      <p>Reason given for failure:</p>\n      <pre>{}</pre>",
        escape(reason)
    );
    layout("403 Forbidden", "/", None, &content)
}

/// A bare status page, as nginx or Django send for 404, 405 and server errors.
pub(crate) fn status(code: u16, reason: &str) -> String {
    format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
        reason = escape(reason)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_attribute_values_and_encodes_next() {
        assert_eq!(escape(r#"a&b<c>"d'"#), "a&amp;b&lt;c&gt;&quot;d&#x27;");
        assert_eq!(
            url_encode("/o/authorize/?a=1&b=x y~é"),
            "/o/authorize/%3Fa%3D1%26b%3Dx%20y~%C3%A9"
        );
        let page = login("/o/authorize/?x=\"1\"&y=2", "tok\"en", "a@b.c", None);
        assert!(
            page.contains(r#"action="/login/?next=/o/authorize/%3Fx%3D%221%22%26y%3D2""#),
            "{page}"
        );
        assert!(page.contains(r#"value="tok&quot;en""#), "{page}");
    }

    #[test]
    fn the_language_switch_comes_before_the_login_form() {
        let page = login(
            "/",
            "csrf",
            "",
            Some("Please enter a correct email and password."),
        );
        let switch = page.find("/i18n/setlang/").expect("language switch");
        let login = page.find(r#"type="password""#).expect("password field");
        assert!(switch < login);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(
            page.contains(r#"<p class="errorlist">Please enter a correct email and password.</p>"#)
        );
    }
}

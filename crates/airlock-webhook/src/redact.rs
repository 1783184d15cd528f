//! Keeping webhook credentials out of Debug output, logs and status.
//!
//! Chat tools put the credential in the webhook URL itself
//! (`https://hooks.slack.com/services/T0/B0/XXXX`, `?key=...&token=...`), so
//! the URL is as secret as the signing secret: only its scheme, host and port
//! are ever shown.

use reqwest::Url;

/// `scheme://host[:port]/…`: the URL without user info, path, query or
/// fragment, safe for logs and `airlock webhooks status`.
///
/// The port is shown only when it is not the scheme's default. Something that
/// does not parse as a URL is shown as `<invalid URL>` (its text could be
/// anything, including a pasted secret).
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(url) => redact_parsed(&url),
        Err(_) => "<invalid URL>".to_owned(),
    }
}

pub(crate) fn redact_parsed(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}/…", url.scheme()),
        None => format!("{}://{host}/…", url.scheme()),
    }
}

/// The shortest secret part [`scrub`] looks for.
const MIN_SCRUBBED: usize = 8;

/// Removes a target's secret, and its URL's secret-bearing parts, from a
/// message that is about to be logged or stored in the status.
///
/// Messages are built from status codes and transport errors with the URL
/// stripped, and the secret only ever goes into the HMAC, so this should
/// never find anything; it is the second lock on the door, because a leaked
/// chat webhook URL is a leaked credential. Needles shorter than
/// [`MIN_SCRUBBED`] are left alone: they cannot be told apart from ordinary
/// words (a secret `s` would turn "Bad Request" into garbage), and nothing
/// that short protects anything anyway.
pub(crate) fn scrub(message: &str, url: &str, secret: &str) -> String {
    let mut out = message.to_owned();
    let mut hide = |needle: &str| {
        if needle.len() >= MIN_SCRUBBED && out.contains(needle) {
            out = out.replace(needle, "[redacted]");
        }
    };
    hide(url);
    if let Ok(parsed) = Url::parse(url) {
        hide(parsed.path());
        if let Some(query) = parsed.query() {
            hide(query);
        }
        if let Some(password) = parsed.password() {
            hide(password);
        }
    }
    hide(secret);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_table() {
        let cases = [
            (
                "https://hooks.slack.com/services/T0/B0/XXXX",
                "https://hooks.slack.com/…",
            ),
            ("https://example.com", "https://example.com/…"),
            ("https://example.com:443/a", "https://example.com/…"),
            (
                "https://example.com:8443/a?b=c",
                "https://example.com:8443/…",
            ),
            ("http://127.0.0.1:9000/hook#frag", "http://127.0.0.1:9000/…"),
            ("http://[::1]:9000/hook", "http://[::1]:9000/…"),
            ("https://user:pass@example.com/x", "https://example.com/…"),
            ("HTTPS://Example.COM/Path", "https://example.com/…"),
            ("not a url /secret", "<invalid URL>"),
            ("", "<invalid URL>"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn scrub_table() {
        let url = "https://u:password1@hooks.example.com/services/abc?token=xyz";
        let cases = [
            ("HTTP 500", "HTTP 500"),
            (
                "failed for url (https://u:password1@hooks.example.com/services/abc?token=xyz)",
                "failed for url ([redacted])",
            ),
            ("path /services/abc leaked", "path [redacted] leaked"),
            ("query token=xyz leaked", "query [redacted] leaked"),
            ("the secret hunter22 leaked", "the secret [redacted] leaked"),
            (
                "the password password1 leaked",
                "the password [redacted] leaked",
            ),
        ];
        for (message, want) in cases {
            assert_eq!(scrub(message, url, "hunter22"), want, "{message}");
        }
        // Short needles are not worth mangling messages for.
        assert_eq!(
            scrub("HTTP 400 Bad Request", "http://h/a?b", "s"),
            "HTTP 400 Bad Request"
        );
    }
}

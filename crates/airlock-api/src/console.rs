//! The web console: one HTML page, a script and a stylesheet, embedded in the
//! binary and served at `/` on `listen_http`. It is a client of the HTTP API
//! like the CLI (it has no other door into the gateway), so everything it
//! shows is scriptable too.
//!
//! The files are plain HTML, CSS and JavaScript with no build step: `cargo
//! build` needs nothing beyond the crates, and the console loads nothing from
//! any other host. The Content-Security-Policy says so to the browser too:
//! scripts, styles and requests only from this origin, no inline script, no
//! framing. The API token lives in the tab's sessionStorage and travels only
//! in the Authorization header, never in a URL.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/app.js");
const STYLE: &str = include_str!("../console/app.css");

/// Only this origin; no inline script or style attribute tricks; no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str, cache: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8", "no-store")
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8", "no-cache")
}

async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8", "no-cache")
}

/// `/`, `/console/app.js`, `/console/app.css`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/console/app.js", get(script))
        .route("/console/app.css", get(style))
}

#[cfg(test)]
mod tests {
    use super::SCRIPT;

    /// The console escapes the characters the CLI escapes: its
    /// `UNSAFE_RANGES` is `airlock_config::text::UNSAFE_RANGES`, pair for pair.
    #[test]
    fn console_escapes_what_the_cli_escapes() {
        let start = SCRIPT
            .find("const UNSAFE_RANGES = [")
            .expect("app.js defines UNSAFE_RANGES");
        let table = &SCRIPT[start..];
        let table = &table[table.find('[').unwrap() + 1..table.find("];").unwrap()];
        let hex = |t: &str| u32::from_str_radix(t.trim().trim_start_matches("0x"), 16).unwrap();
        let pairs: Vec<(u32, u32)> = table
            .split(']')
            .filter_map(|p| p.split_once('['))
            .map(|(_, p)| {
                let (lo, hi) = p.split_once(',').expect("[lo, hi]");
                (hex(lo), hex(hi))
            })
            .collect();
        assert_eq!(pairs, airlock_config::text::UNSAFE_RANGES);
    }
}

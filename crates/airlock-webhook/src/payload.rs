//! The JSON body of one delivery and its identifier.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::Event;

/// A fresh delivery id: `whd_` and 32 random lowercase hex digits. One id per
/// (event, target); retries of the same delivery reuse it, so receivers can
/// deduplicate on `X-Airlock-Delivery`.
pub(crate) fn delivery_id() -> String {
    format!("whd_{}", hex::encode(rand::random::<[u8; 16]>()))
}

#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    event: &'a str,
    at: String,
    at_ms: i64,
    text: &'a str,
    data: &'a serde_json::Value,
}

/// The compact JSON body that is signed and sent, byte for byte.
pub(crate) fn body(id: &str, event: &Event) -> String {
    let empty_object = serde_json::Value::Object(serde_json::Map::new());
    // Receivers are promised an object; an event without fields sends `{}`.
    let data = if event.data.is_null() {
        &empty_object
    } else {
        &event.data
    };
    // Chat tools show `text` to people: it is one line with every control
    // and invisible formatting character escaped (a reason cannot fake a
    // second line or hide behind a bidi override). `data` keeps the exact
    // values for programs.
    let text = airlock_config::text::escape(&event.text);
    let body = Body {
        id,
        event: &event.kind,
        at: rfc3339_utc(event.at_ms),
        at_ms: event.at_ms,
        text: &text,
        data,
    };
    // Serializing strings, integers and a `Value` cannot fail.
    serde_json::to_string(&body).expect("a webhook body always serializes")
}

/// `at_ms` as RFC 3339 in UTC with millisecond precision when it has any
/// (`2023-11-14T22:13:20.123Z`). Instants outside the years 0000–9999, which
/// RFC 3339 cannot write, are clamped to its range.
pub(crate) fn rfc3339_utc(at_ms: i64) -> String {
    const MIN_MS: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
    const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let ms = at_ms.clamp(MIN_MS, MAX_MS);
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("clamped into the representable range");
    at.format(&Rfc3339)
        .expect("years 0000-9999 format as RFC 3339")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_table() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (1_700_000_000_000, "2023-11-14T22:13:20Z"),
            (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
            (1_700_000_000_100, "2023-11-14T22:13:20.1Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (i64::MAX, "9999-12-31T23:59:59.999Z"),
            (i64::MIN, "0000-01-01T00:00:00Z"),
        ];
        for (ms, want) in cases {
            assert_eq!(rfc3339_utc(ms), want, "{ms}");
        }
    }

    #[test]
    fn body_is_compact_and_ordered() {
        let event = Event {
            kind: "grant.revoked".into(),
            text: "alice's \"write\" grant on orders was revoked".into(),
            at_ms: 1_700_000_000_123,
            data: serde_json::json!({"grant_id": "g_1", "user": "alice"}),
        };
        assert_eq!(
            body("whd_00", &event),
            r#"{"id":"whd_00","event":"grant.revoked","at":"2023-11-14T22:13:20.123Z","at_ms":1700000000123,"text":"alice's \"write\" grant on orders was revoked","data":{"grant_id":"g_1","user":"alice"}}"#
        );
    }

    /// Regression: untrusted text (a reason, a statement) reached chat
    /// tools raw in `text`; a CR, ESC or bidi override could change what
    /// the approver read. `text` is escaped; `data` stays exact.
    #[test]
    fn text_shows_control_and_format_characters_escaped() {
        let reason = "INC-42\r\x1b[2Kfixed \u{202e}5\nlead1 approved";
        let event = Event {
            kind: "request.created".into(),
            text: format!("alice requests write access: \"{reason}\""),
            at_ms: 0,
            data: serde_json::json!({ "reason": reason }),
        };
        let sent: serde_json::Value = serde_json::from_str(&body("whd_00", &event)).unwrap();
        assert_eq!(
            sent["text"],
            r#"alice requests write access: "INC-42\r\x1b[2Kfixed \u{202e}5\nlead1 approved""#
        );
        assert_eq!(sent["data"]["reason"], reason);
    }

    #[test]
    fn missing_data_is_an_empty_object() {
        let event = Event {
            kind: "k".into(),
            text: "t".into(),
            at_ms: 0,
            data: serde_json::Value::Null,
        };
        assert!(body("whd_00", &event).ends_with(r#""data":{}}"#));
    }

    #[test]
    fn delivery_ids_are_fresh() {
        let a = delivery_id();
        let b = delivery_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 32);
        assert!(a.starts_with("whd_"));
        assert!(a[4..]
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}

//! Anchors: what the gateway sends off the host for each checkpoint, and
//! `verify --anchors` reads back.
//!
//! An anchor is one compact JSON line naming a checkpoint record by its seq
//! and the SHA-256 of its line:
//!
//! ```text
//! {"event":"audit.checkpoint","seq":1042,"hash":"<64 hex>","ts":1763800000123,"key":"<key id>","sig":"<signature hex>"}
//! ```
//!
//! Kept somewhere the gateway host cannot rewrite (a log collector, a SIEM,
//! a webhook receiver), anchors make a log that was cut back, or rewritten
//! and re-signed with another key, fail verification: the log must still
//! hold every anchored checkpoint, byte for byte. Reading is tolerant: any
//! line holding such an object (after a syslog or journald prefix, or as the
//! `data` of a webhook body) counts, and other lines are skipped.

use serde::{Deserialize, Serialize};

use crate::record::{self, Hash};

/// The event name of an anchor line and of its webhook.
pub const ANCHOR_EVENT: &str = "audit.checkpoint";

/// One checkpoint, as sent off the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    /// The SHA-256 of the checkpoint record's line.
    pub hash: Hash,
    pub ts: i64,
    /// The id of the key that signed it.
    pub key: String,
    pub sig: String,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    seq: u64,
    hash: String,
    ts: i64,
    key: String,
    sig: String,
}

impl Anchor {
    /// The anchor's fields as a JSON object (a webhook's `data`).
    pub fn data(&self) -> serde_json::Value {
        serde_json::json!({
            "seq": self.seq,
            "hash": record::hex(&self.hash),
            "ts": self.ts,
            "key": self.key,
            "sig": self.sig,
        })
    }

    /// The anchor as one line of JSON (without a newline).
    pub fn to_line(&self) -> String {
        // `event` first, so a person reading a log sees what the line is.
        format!(
            "{{\"event\":\"{ANCHOR_EVENT}\",\"seq\":{},\"hash\":\"{}\",\"ts\":{},\"key\":{},\"sig\":{}}}",
            self.seq,
            record::hex(&self.hash),
            self.ts,
            serde_json::Value::from(self.key.as_str()),
            serde_json::Value::from(self.sig.as_str()),
        )
    }

    /// The anchor a line holds, if any: an anchor line, possibly after a
    /// prefix (syslog, journald, a timestamp), or a webhook body whose
    /// `event` is `audit.checkpoint`.
    pub fn from_line(line: &str) -> Option<Anchor> {
        let start = line.find('{')?;
        let value: serde_json::Value = serde_json::from_str(line[start..].trim_end()).ok()?;
        let object = value.as_object()?;
        if object.get("event")?.as_str()? != ANCHOR_EVENT {
            return None;
        }
        let fields = match object.get("data") {
            Some(data) => data.clone(),
            None => value.clone(),
        };
        let wire: Wire = serde_json::from_value(fields).ok()?;
        Some(Anchor {
            seq: wire.seq,
            hash: record::parse_hash(wire.hash.as_bytes())?,
            ts: wire.ts,
            key: wire.key,
            sig: wire.sig,
        })
    }

    /// Every anchor in `text`, one per line, other lines skipped.
    pub fn read_all(text: &str) -> Vec<Anchor> {
        text.lines().filter_map(Anchor::from_line).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_others_are_skipped() {
        let a = Anchor {
            seq: 42,
            hash: [0xab; 32],
            ts: 1_700_000_000_123,
            key: "0123456789abcdef".into(),
            sig: "00ff".into(),
        };
        let line = a.to_line();
        assert_eq!(Anchor::from_line(&line), Some(a.clone()));
        let text = format!(
            "Dec 07 21:34:35 host airlock[123]: {line}\n\
             2026-12-07T21:34:35Z INFO airlock gateway listening\n\
             {{\"event\":\"other\",\"seq\":1}}\n\
             {{\"id\":\"whd_1\",\"event\":\"audit.checkpoint\",\"at_ms\":1,\"text\":\"t\",\"data\":{}}}\n\
             {{\"event\":\"audit.checkpoint\",\"seq\":1,\"hash\":\"not hex\",\"ts\":1,\"key\":\"k\",\"sig\":\"s\"}}\n",
            a.data()
        );
        assert_eq!(Anchor::read_all(&text), vec![a.clone(), a]);
    }
}

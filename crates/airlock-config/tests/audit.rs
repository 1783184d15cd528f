//! `[audit]`: defaults, every setting, and every mistake reported with its key.

use std::path::Path;
use std::time::Duration;

use airlock_config::{AnchorSink, AuditFsync, AuditSettings, ByteSize, Config, ConfigError};

const BASE: &str = r#"[gateway]
listen_postgres = "127.0.0.1:7432"
listen_http = "127.0.0.1:7480"
data_dir = "data"
"#;

fn load(extra: &str) -> Result<Config, ConfigError> {
    Config::from_str(&format!("{BASE}{extra}"), Path::new("airlock.toml"))
}

fn errors(extra: &str) -> String {
    match load(extra) {
        Ok(_) => panic!("accepted:\n{extra}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults() {
    let c = load("").unwrap();
    assert_eq!(c.audit, AuditSettings::default());
    assert_eq!(c.audit.fsync, AuditFsync::Batched);
    assert_eq!(c.audit.replay_rows, 20);
    assert_eq!(c.audit.retain, None);
    assert_eq!(load("[audit]\n").unwrap().audit, AuditSettings::default());
}

#[test]
fn every_setting() {
    let c = load(
        r#"
[audit]
fsync = "always"
checkpoint_every = 50
checkpoint_interval = "2s"
retain = "400d"
replay_rows = 0
segment_size = "1MiB"
anchors = ["syslog", "webhook", "syslog"]
"#,
    )
    .unwrap();
    assert_eq!(
        c.audit,
        AuditSettings {
            fsync: AuditFsync::Always,
            checkpoint_every: 50,
            checkpoint_interval: Duration::from_secs(2),
            retain: Some(Duration::from_secs(400 * 86_400)),
            replay_rows: 0,
            segment_size: ByteSize(1024 * 1024),
            auditor_roles: Vec::new(),
            anchors: vec![AnchorSink::Syslog, AnchorSink::Webhook],
        }
    );
    assert_eq!(
        c.audit
            .anchors
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        ["syslog", "webhook"]
    );
    assert!(load(
        "[audit]
anchors = []
"
    )
    .unwrap()
    .audit
    .anchors
    .is_empty());
    assert_eq!(
        AuditSettings::default().anchors,
        [AnchorSink::Stdout, AnchorSink::Webhook]
    );
    assert_eq!(
        load("[audit]\nfsync = \"off\"\n").unwrap().audit.fsync,
        AuditFsync::Off
    );
}

#[test]
fn mistakes() {
    let cases = [
        (
            "fsync = \"sometimes\"",
            "`fsync` in [audit]",
            "\"always\", \"batched\", \"off\"",
        ),
        (
            "checkpoint_every = 0",
            "`checkpoint_every` in [audit]",
            "between 1 and",
        ),
        (
            "checkpoint_interval = \"2h\"",
            "`checkpoint_interval` in [audit]",
            "above the ceiling",
        ),
        (
            "checkpoint_interval = 5",
            "`checkpoint_interval` in [audit]",
            "bare integer",
        ),
        (
            "retain = \"12h\"",
            "`retain` in [audit]",
            "shorter than the minimum of 1d",
        ),
        ("retain = \"forever\"", "`retain` in [audit]", "retain"),
        ("replay_rows = -1", "`replay_rows` in [audit]", "between 0"),
        (
            "replay_rows = 100000",
            "`replay_rows` in [audit]",
            "between 0",
        ),
        (
            "segment_size = \"1KiB\"",
            "`segment_size` in [audit]",
            "below the minimum",
        ),
        (
            "segment_size = \"2GiB\"",
            "`segment_size` in [audit]",
            "above the maximum",
        ),
        ("fsink = \"always\"", "fsink", "unknown key"),
        (
            "anchors = [\"stdout\", \"kafka\"]",
            "`anchors` in [audit]: \"kafka\"",
            "\"stdout\", \"syslog\", \"webhook\"",
        ),
    ];
    for (line, key, why) in cases {
        let text = errors(&format!("[audit]\n{line}\n"));
        assert!(text.contains(key), "{line}: {text}");
        assert!(text.contains(why), "{line}: {text}");
    }
    // Every problem at once.
    let text = errors("[audit]\nfsync = \"x\"\nreplay_rows = -5\n");
    assert!(
        text.contains("`fsync` in [audit]") && text.contains("`replay_rows` in [audit]"),
        "{text}"
    );
}

#[test]
fn auditor_roles_name_defined_roles() {
    let roles = "\n[[role]]\nname = \"auditor\"\n";
    let c = load(&format!("[audit]\nauditor_roles = [\"auditor\"]\n{roles}")).unwrap();
    assert_eq!(c.audit.auditor_roles.len(), 1);
    assert_eq!(c.audit.auditor_roles[0].as_str(), "auditor");
    let text = errors(&format!("[audit]\nauditor_roles = [\"auditors\"]\n{roles}"));
    assert!(
        text.contains("`auditor_roles` in [audit] names unknown role \"auditors\"")
            && text.contains("defined roles: \"auditor\""),
        "{text}"
    );
    let text = errors(&format!(
        "[audit]\nauditor_roles = [\"auditor\", \"auditor\"]\n{roles}"
    ));
    assert!(text.contains("twice"), "{text}");
}

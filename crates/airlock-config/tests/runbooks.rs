//! `[runbooks]`: off by default, the directory resolved against the config
//! file's, and mistakes reported with their line.

use std::path::{Path, PathBuf};

use airlock_config::{ByteSize, Config, ConfigError, RunbookSettings};

const BASE: &str = r#"[gateway]
listen_postgres = "127.0.0.1:7432"
listen_http = "127.0.0.1:7480"
data_dir = "data"
"#;

fn load(extra: &str) -> Result<Config, ConfigError> {
    Config::from_str(
        &format!("{BASE}{extra}"),
        Path::new("/etc/airlock/airlock.toml"),
    )
}

fn errors(extra: &str) -> String {
    match load(extra) {
        Ok(_) => panic!("accepted:\n{extra}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn off_without_the_table() {
    assert_eq!(load("").unwrap().runbooks, RunbookSettings::default());
    assert_eq!(load("").unwrap().runbooks.dir, None);
}

#[test]
fn dir_is_relative_to_the_config_file_and_max_output_parses() {
    let c = load("[runbooks]\ndir = \"runbooks\"\nmax_output = \"1MiB\"\n").unwrap();
    assert_eq!(
        c.runbooks,
        RunbookSettings {
            dir: Some(PathBuf::from("/etc/airlock/runbooks")),
            max_output: ByteSize(1024 * 1024),
        }
    );
    let c = load("[runbooks]\ndir = \"/srv/runbooks\"\n").unwrap();
    assert_eq!(c.runbooks.dir, Some(PathBuf::from("/srv/runbooks")));
    assert_eq!(c.runbooks.max_output, RunbookSettings::DEFAULT_MAX_OUTPUT);
}

#[test]
fn mistakes_name_their_line() {
    let e = errors("[runbooks]\ndir = \"\"\n");
    assert!(
        e.contains("airlock.toml:6:") && e.contains("`dir` in [runbooks] is empty"),
        "{e}"
    );
    let e = errors("[runbooks]\ndir = \"r\"\nmax_output = \"1KB\"\n");
    assert!(
        e.contains(":7:") && e.contains("`max_output` in [runbooks]"),
        "{e}"
    );
    let e = errors("[runbooks]\ndir = \"r\"\nmax_output = \"1GiB\"\n");
    assert!(e.contains("`max_output` in [runbooks]"), "{e}");
    let e = errors("[runbooks]\nmax_output = \"64KiB\"\n");
    assert!(e.contains("dir"), "{e}");
    let e = errors("[runbooks]\ndir = \"r\"\ndirectory = \"x\"\n");
    assert!(e.contains("directory"), "{e}");
}

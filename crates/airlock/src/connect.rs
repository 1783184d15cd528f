//! `airlock connect`: mint a session credential and print how to use it, or
//! run a client with it.

use std::process::ExitCode;

use crate::client;

pub fn run(
    resource: &str,
    access: &str,
    ttl: Option<&str>,
    json: bool,
    exec: Option<String>,
    command: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let conn = rt.block_on(async {
        let api = client::Api::from_login()?;
        client::mint(&api, resource, access, ttl).await
    })?;
    drop(rt);
    let mut argv: Vec<String> = Vec::new();
    if let Some(program) = exec {
        argv.push(program);
    }
    argv.extend(command);
    let c = &conn.credential;
    let expires = time::OffsetDateTime::from_unix_timestamp(c.expires_at_ms / 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    if !argv.is_empty() {
        eprintln!(
            "airlock: {} on {} ({}), credential {} valid until {expires}",
            c.user, c.resource, c.access, c.id
        );
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .envs(conn.env())
            .status()
            .map_err(|e| anyhow::anyhow!("could not run {:?}: {e}", argv[0]))?;
        return Ok(ExitCode::from(
            status.code().unwrap_or(1).clamp(0, 255) as u8
        ));
    }
    if json {
        let env: serde_json::Map<String, serde_json::Value> = conn
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
            .collect();
        let out = serde_json::json!({
            "credential_id": c.id, "user": c.user, "resource": c.resource, "access": c.access,
            "grant_id": c.grant_id, "expires_at": expires, "uri": conn.uri(), "env": env,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Session credential {} for {} on {} ({} access), valid until {expires}.",
        c.id, c.user, c.resource, c.access
    );
    println!();
    println!("Connection URI:");
    println!("  {}", conn.uri());
    println!();
    println!("Or the equivalent environment:");
    for (k, v) in conn.env() {
        println!("  export {k}='{v}'");
    }
    if let Some(ca) = &conn.ca_file {
        println!();
        println!(
            "The gateway's certificate is verified against its CA, saved to {} (sslmode=verify-full).",
            ca.display()
        );
    }
    println!();
    println!(
        "Or let airlock start the client: airlock connect {resource} --access {access} --exec psql"
    );
    Ok(ExitCode::SUCCESS)
}

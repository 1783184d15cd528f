//! The OpenAPI 3.1 document served at `/api/openapi.json`.
//!
//! Written by hand as data: the API is small, and a test checks that every
//! route the router serves is described here and nothing more.

use serde_json::{json, Value};

pub fn document() -> Value {
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let err = |desc: &str| json!({ "description": desc, "content": { "application/json": { "schema": error } } });
    let query = |name: &str, kind: &str, desc: &str| json!({ "name": name, "in": "query", "description": desc, "schema": { "type": kind } });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Airlock API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The one door into immutable production: session credentials, access, sessions."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": { "type": "string" },
                        "message": { "type": "string" },
                        "hint": { "type": "string" }
                    }
                },
                "Access": { "type": "string", "enum": ["read", "write"] },
                "Session": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" }, "user": { "type": "string" },
                        "resource": { "type": "string" }, "access": { "type": "string" },
                        "credential_id": { "type": "string" }, "client_addr": { "type": "string" },
                        "tls": { "type": "boolean" }, "started_ms": { "type": "integer" },
                        "ended_ms": { "type": ["integer", "null"] },
                        "statement_count": { "type": "integer" },
                        "end_reason": { "type": ["string", "null"] }
                    }
                }
            }
        },
        "security": [{ "bearer": [] }],
        "paths": {
            "/healthz": { "get": {
                "summary": "Liveness and health", "security": [],
                "responses": { "200": { "description": "healthy" },
                    "503": { "description": "the audit log cannot be written: statements are refused (body says why)" } }
            }},
            "/metrics": { "get": {
                "summary": "Prometheus metrics (OpenMetrics text); admins ([access] admin_roles) or the scrape token ([access] metrics_token_env)",
                "responses": { "200": { "description": "metrics" }, "401": err("no or bad token"), "403": err("not an admin") }
            }},
            "/api/openapi.json": { "get": {
                "summary": "This document", "security": [],
                "responses": { "200": { "description": "OpenAPI document" } }
            }},
            "/api/v1/ca.crt": { "get": {
                "summary": "The gateway's generated CA certificate (PEM), for sslmode=verify-full", "security": [],
                "responses": { "200": { "description": "PEM" }, "404": err("no generated CA") }
            }},
            "/api/v1/whoami": { "get": {
                "summary": "The caller's user and roles",
                "responses": { "200": { "description": "the caller" }, "401": err("no or bad token") }
            }},
            "/api/v1/tokens": { "get": {
                "summary": "The caller's API tokens, newest first (never a secret or hash); admins may ask for anyone's",
                "parameters": [
                    query("user", "string", "another user's tokens (admins only)"),
                    query("all", "boolean", "everyone's tokens (admins only)")
                ],
                "responses": { "200": { "description": "[{id, user, label, created_ms, expires_ms, revoked_ms, state, current}]" }, "400": err("bad query"), "401": err("no or bad token"), "403": err("not an admin") }
            }},
            "/api/v1/tokens/{id}": { "delete": {
                "summary": "Revoke an API token (the caller's own; admins: any), with the session credentials it minted; their live sessions end",
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "responses": { "200": { "description": "the token, revoked" }, "401": err("no or bad token"), "404": err("no such token of yours"), "503": err("the audit log cannot be written") }
            }},
            "/api/v1/resources": { "get": {
                "summary": "Resources the caller can reach and at which level",
                "responses": { "200": { "description": "list" }, "401": err("no or bad token") }
            }},
            "/api/v1/credentials": { "post": {
                "summary": "Mint a short-lived session credential for one resource and access level",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["resource"],
                    "properties": {
                        "resource": { "type": "string" },
                        "access": { "$ref": "#/components/schemas/Access" },
                        "ttl": { "type": "string", "description": "e.g. 30m; at most the gateway's credential_ttl" }
                    }
                }}}},
                "responses": {
                    "201": { "description": "the credential; its password is shown only here" },
                    "400": err("bad request or ttl"), "401": err("no or bad token"),
                    "403": err("access denied"), "404": err("unknown resource")
                }
            }},
            "/api/v1/audit": { "get": {
                "summary": "Audit log records, the newest `limit`, oldest first, as stored (with seq, prev, ts, kind). Auditors ([audit] auditor_roles) search everything; others only their own records",
                "parameters": [
                    { "name": "user", "in": "query", "schema": { "type": "string" } },
                    { "name": "resource", "in": "query", "schema": { "type": "string" } },
                    { "name": "session", "in": "query", "schema": { "type": "string" } },
                    { "name": "since_ms", "in": "query", "schema": { "type": "integer" } },
                    { "name": "until_ms", "in": "query", "schema": { "type": "integer" } },
                    { "name": "kind", "in": "query", "schema": { "type": "string" }, "description": "comma-separated record kinds" },
                    { "name": "grep", "in": "query", "schema": { "type": "string" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 10000 } }
                ],
                "responses": { "200": { "description": "{ records: [...] }" }, "400": err("bad query"),
                    "401": err("no or bad token"), "403": err("another user's records, and not an auditor") }
            }},
            "/api/v1/audit/verify": { "get": {
                "summary": "Verify the whole audit log against the gateway's key and its writer's count of records: records, time span, checkpoints and their signed rules, first problem (auditors only)",
                "responses": { "200": { "description": "the report; ok is false when a problem was found" },
                    "401": err("no or bad token"), "403": err("not an auditor") }
            }},
            "/api/v1/sessions": { "get": {
                "summary": "The caller's proxied sessions, newest first (an auditor's: anyone's, with `user`)",
                "parameters": [
                    { "name": "active", "in": "query", "schema": { "type": "boolean" } },
                    { "name": "user", "in": "query", "schema": { "type": "string" }, "description": "another user's sessions: auditors only" },
                    { "name": "since_ms", "in": "query", "schema": { "type": "integer" }, "description": "sessions open at or after this time" },
                    { "name": "resource", "in": "query", "schema": { "type": "string" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "maximum": 1000 } }
                ],
                "responses": { "200": { "description": "sessions", "content": { "application/json": {
                    "schema": { "type": "array", "items": { "$ref": "#/components/schemas/Session" } } } } },
                    "401": err("no or bad token") }
            }},
            "/api/v1/sessions/{id}/statements": { "get": {
                "summary": "Statements of one of the caller's sessions, from the audit log (seq, at_ms, text, decision, rule, sqlstate) with each run's end (runs: duration_us, rows, tags, sqlstate, error, columns, first_rows as the client saw them, masked)",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "statements" }, "401": err("no or bad token"),
                    "404": err("no such session") }
            }},
            "/api/v1/requests": {
                "post": {
                    "summary": "File a request: time-boxed access, or one reviewed statement (`statement`)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "required": ["resource", "reason"],
                        "properties": {
                            "resource": { "type": "string" },
                            "access": { "$ref": "#/components/schemas/Access" },
                            "for": { "type": "string", "description": "grant duration, e.g. 30m; at most the rule's max" },
                            "reason": { "type": "string" },
                            "statement": { "type": "string", "description": "exact SQL to review; runs once with write access" }
                        }
                    }}}},
                    "responses": { "201": { "description": "the request, with the users who can approve it" },
                        "400": err("bad input: missing reason, duration above max, ..."),
                        "403": err("no rule allows requesting this"), "404": err("unknown resource"),
                        "409": err("already allowed or granted") }
                },
                "get": {
                    "summary": "Requests the caller filed or may approve, newest first",
                    "parameters": [
                        { "name": "pending", "in": "query", "schema": { "type": "boolean" } },
                        { "name": "mine", "in": "query", "schema": { "type": "boolean" } },
                        { "name": "limit", "in": "query", "schema": { "type": "integer", "maximum": 1000 } }
                    ],
                    "responses": { "200": { "description": "requests" }, "401": err("no or bad token") }
                }
            },
            "/api/v1/requests/{id}": { "get": {
                "summary": "One request (its requester and approvers only)",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "the request" }, "404": err("no such request you can see") }
            }},
            "/api/v1/requests/{id}/approve": { "post": {
                "summary": "Approve (never one's own); the last needed approval creates the grant",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "requestBody": { "content": { "application/json": { "schema": {
                    "type": "object", "properties": { "comment": { "type": "string" } } } } } },
                "responses": { "200": { "description": "the request" }, "403": err("self-approval or not an approver"),
                    "404": err("no such request you can see"), "409": err("not pending: approved, denied or expired") }
            }},
            "/api/v1/requests/{id}/deny": { "post": {
                "summary": "Deny with a reason",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["reason"], "properties": { "reason": { "type": "string" } } } } } },
                "responses": { "200": { "description": "the request" }, "400": err("missing reason"),
                    "403": err("not an approver"), "404": err("no such request you can see"), "409": err("not pending") }
            }},
            "/api/v1/requests/{id}/execute": { "post": {
                "summary": "Run an approved reviewed statement once, in a transaction, with the write credential",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "columns, rows, command tag, or the database error" },
                    "403": err("not the requester"), "409": err("not approved, already run, or the approval lapsed") }
            }},
            "/api/v1/requests/{id}/run": { "post": {
                "summary": "Start the approved runbook run of a request, exactly as filed (same runbook digest, same parameters), once; the events stream as JSON lines",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "application/x-ndjson: run_started, step_started, output, step_finished, finished, outcome" },
                    "403": err("not the requester"), "404": err("no such request you can see"),
                    "409": err("not approved, already started, the approval lapsed, or the runbook changed since"),
                    "503": err("the audit log cannot be written") }
            }},
            "/api/v1/runbooks": { "get": {
                "summary": "The runbooks the caller may run, with parameters and steps",
                "responses": { "200": { "description": "{runbooks}" } }
            }},
            "/api/v1/runbooks/{name}/runs": { "post": {
                "summary": "Run a runbook: {params: {name: text}, reason?, dry_run?}. A dry run answers the plan (secrets redacted); a runbook with approvals files a request (201); otherwise the run's events stream as JSON lines",
                "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "the plan (dry run), or application/x-ndjson events" },
                    "201": { "description": "the request filed for approval" },
                    "400": err("bad parameters, every problem named"), "403": err("no role of the caller may run it"),
                    "404": err("no such runbook"), "503": err("the audit log cannot be written") }
            }},
            "/api/v1/grants": { "get": {
                "summary": "The caller's live time-boxed grants; all=true adds ended ones and those the caller approves",
                "parameters": [{ "name": "all", "in": "query", "schema": { "type": "boolean" } }],
                "responses": { "200": { "description": "grants" } }
            }},
            "/api/v1/grants/{id}/revoke": { "post": {
                "summary": "Revoke a grant: its live sessions end within a second and its credentials stop working",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["reason"], "properties": { "reason": { "type": "string" } } } } } },
                "responses": { "200": { "description": "the grant" }, "400": err("missing reason"),
                    "404": err("no such grant you can see"), "409": err("already revoked or expired") }
            }},
            "/api/v1/break-glass": { "post": {
                "summary": "Take emergency access where a break_glass rule allows it: immediate, short, announced",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["resource", "reason"],
                    "properties": { "resource": { "type": "string" }, "access": { "$ref": "#/components/schemas/Access" },
                        "for": { "type": "string" }, "reason": { "type": "string" } } } } } },
                "responses": { "201": { "description": "the grant" }, "400": err("missing reason or duration above max"),
                    "403": err("no break-glass rule") }
            }},
            "/api/v1/policy/explain": { "get": {
                "summary": "The decision for (user, resource, access) with its chain of reasons, live grants included",
                "parameters": [
                    { "name": "user", "in": "query", "schema": { "type": "string" } },
                    { "name": "resource", "in": "query", "required": true, "schema": { "type": "string" } },
                    { "name": "access", "in": "query", "required": true, "schema": { "$ref": "#/components/schemas/Access" } }
                ],
                "responses": { "200": { "description": "the explanation" }, "403": err("explaining others needs an approver role") }
            }},
            "/api/v1/webhooks": { "get": {
                "summary": "Webhook delivery status (URLs shown without their secret path); admins only",
                "responses": { "200": { "description": "one entry per webhook" }, "401": err("no or bad token"), "403": err("not an admin") }
            }},
            "/api/v1/timeline": { "get": {
                "summary": "Logs, span summaries, threshold crossings, deploy markers and access events of a window, in time order",
                "parameters": [
                    query("since_ms", "integer", "start (unix ms; default until - 1h)"),
                    query("until_ms", "integer", "end, exclusive (unix ms; default now)"),
                    query("since_ns", "integer", "start in unix ns (wins over since_ms)"),
                    query("until_ns", "integer", "end in unix ns (wins over until_ms)"),
                    query("service", "string", "service.name"),
                    query("version", "string", "service.version"),
                    query("env", "string", "deployment.environment.name"),
                    query("trace", "string", "a trace id (32 hex digits): all its spans and logs"),
                    query("grep", "string", "case-insensitive text"),
                    query("kinds", "string", "comma-separated: logs, spans, metrics, deploys, access"),
                    query("attr", "string", "key=value, comma-separated"),
                    query("limit", "integer", "1 to 10000 (default 1000)"),
                    query("order", "string", "oldest (default) or newest")
                ],
                "responses": { "200": { "description": "{since_ns, until_ns, events, truncated}" }, "400": err("bad query"), "401": err("no or bad token") }
            }},
            "/api/v1/traces/{id}": { "get": {
                "summary": "One trace: spans (with service.version) and logs",
                "responses": { "200": { "description": "the trace" }, "400": err("not a trace id"), "404": err("nothing stored of this trace") }
            }},
            "/api/v1/compare": { "get": {
                "summary": "Two versions of a service: requests, error rate, p50/p95/p99 of server spans, errors only in the newer",
                "parameters": [
                    query("service", "string", "required"),
                    query("from", "string", "the older version (required)"),
                    query("to", "string", "the newer version (required)"),
                    query("since_ms", "integer", "default now - 24h"),
                    query("until_ms", "integer", "default now")
                ],
                "responses": { "200": { "description": "the comparison" }, "400": err("bad query") }
            }},
            "/api/v1/deploys": {
                "get": {
                    "summary": "Deploy markers of a window (default the last 7 days), oldest first; [access] telemetry_roles",
                    "responses": { "200": { "description": "{deploys}" }, "400": err("bad query") }
                },
                "post": {
                    "summary": "Mark a deploy: {service, version?, id?, commit?, env?, time_ms?}; also an audit access event; [access] deploy_roles or admin_roles",
                    "responses": { "201": { "description": "the marker" }, "400": err("bad body"), "403": err("no deploy role"), "503": err("the audit log cannot be written") }
                }
            }
        }
    })
}

/// The routes the router serves, as (method, path) — kept next to the
/// document so the test below notices a route added on one side only.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/api/openapi.json"),
    ("get", "/api/v1/ca.crt"),
    ("get", "/api/v1/whoami"),
    ("get", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{id}"),
    ("get", "/api/v1/resources"),
    ("post", "/api/v1/credentials"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/audit/verify"),
    ("get", "/api/v1/sessions"),
    ("get", "/api/v1/sessions/{id}/statements"),
    ("post", "/api/v1/requests"),
    ("get", "/api/v1/requests"),
    ("get", "/api/v1/requests/{id}"),
    ("post", "/api/v1/requests/{id}/approve"),
    ("post", "/api/v1/requests/{id}/deny"),
    ("post", "/api/v1/requests/{id}/execute"),
    ("post", "/api/v1/requests/{id}/run"),
    ("get", "/api/v1/runbooks"),
    ("post", "/api/v1/runbooks/{name}/runs"),
    ("get", "/api/v1/grants"),
    ("post", "/api/v1/grants/{id}/revoke"),
    ("post", "/api/v1/break-glass"),
    ("get", "/api/v1/policy/explain"),
    ("get", "/api/v1/webhooks"),
    ("get", "/api/v1/timeline"),
    ("get", "/api/v1/traces/{id}"),
    ("get", "/api/v1/compare"),
    ("get", "/api/v1/deploys"),
    ("post", "/api/v1/deploys"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_exactly_the_routes() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(p, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.clone(), p.clone()))
            })
            .collect();
        documented.sort();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
    }
}

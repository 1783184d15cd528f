//! The OpenAPI 3.1 document served at `/api/openapi.json`.
//!
//! Written by hand as data: the API is small, and a test checks that every
//! route the router serves is described here and nothing more.

use serde_json::{json, Value};

pub fn document() -> Value {
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let err = |desc: &str| json!({ "description": desc, "content": { "application/json": { "schema": error } } });
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
                "responses": { "200": { "description": "healthy" } }
            }},
            "/metrics": { "get": {
                "summary": "Prometheus metrics (OpenMetrics text)", "security": [],
                "responses": { "200": { "description": "metrics" } }
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
            "/api/v1/sessions": { "get": {
                "summary": "The caller's proxied sessions, newest first",
                "parameters": [
                    { "name": "active", "in": "query", "schema": { "type": "boolean" } },
                    { "name": "resource", "in": "query", "schema": { "type": "string" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "maximum": 1000 } }
                ],
                "responses": { "200": { "description": "sessions", "content": { "application/json": {
                    "schema": { "type": "array", "items": { "$ref": "#/components/schemas/Session" } } } } },
                    "401": err("no or bad token") }
            }},
            "/api/v1/sessions/{id}/statements": { "get": {
                "summary": "Statements of one of the caller's sessions",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": { "description": "statements" }, "401": err("no or bad token"),
                    "404": err("no such session") }
            }}
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
    ("get", "/api/v1/resources"),
    ("post", "/api/v1/credentials"),
    ("get", "/api/v1/sessions"),
    ("get", "/api/v1/sessions/{id}/statements"),
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

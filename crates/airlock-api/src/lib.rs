//! The HTTP API: bearer-token auth, health, metrics, OpenAPI, credentials.

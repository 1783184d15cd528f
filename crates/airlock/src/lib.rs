//! Airlock wiring: serve, quickstart, client commands.

//! Fuzz target: bytes from an upstream PostgreSQL server, through the framing
//! and the decoders the relay applies to them (RowDescription, DataRow,
//! ErrorResponse/NoticeResponse, `BackendMessage`). The checks live in
//! `tests/common/backend_model.rs`, shared with the stable test
//! `tests/backend_fuzz_corpus.rs` (see `frontend_model.rs` for why it is
//! shared by path).

#![no_main]

// The stable test uses the summaries; the fuzz target needs only the checks.
#[allow(dead_code)]
#[path = "../../tests/common/backend_model.rs"]
mod backend_model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    backend_model::check_backend_input(data);
});

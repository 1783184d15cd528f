//! Fuzz target: bytes from a client, through the startup, framing and
//! message decoders, as the gateway reads them. The checks live in
//! `tests/common/frontend_model.rs`, shared with the stable test
//! `tests/fuzz_corpus.rs` (see that file for why it is shared by path).

#![no_main]

// The stable test uses the summaries; the fuzz target needs only the checks.
#[allow(dead_code)]
#[path = "../../tests/common/frontend_model.rs"]
mod frontend_model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    frontend_model::check_frontend_input(data);
});

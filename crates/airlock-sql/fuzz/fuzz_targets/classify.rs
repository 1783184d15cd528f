//! Fuzz target: any text through the classifier. The checks live in
//! `tests/common/model.rs`, shared with the stable corpus test.

#![no_main]

#[path = "../../tests/common/model.rs"]
mod model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(sql) = std::str::from_utf8(data) {
        model::check(sql);
    }
});

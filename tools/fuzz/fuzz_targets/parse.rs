//! Fuzz target: `sip::Msg::parse` and the builders applied to what it accepts.
//! The harness (and its invariants) is `sipedge::fuzzing::parse_one`, shared with
//! `tests/fuzz_replay.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sipedge::fuzzing::parse_one(data);
});

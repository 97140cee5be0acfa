//! Fuzz target: `sip::framing::next_frame` over random chunkings of a TCP stream.
//! The harness (and its invariants) is `sipedge::fuzzing::frame_stream`, shared with
//! `tests/fuzz_replay.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sipedge::fuzzing::frame_stream(data);
});

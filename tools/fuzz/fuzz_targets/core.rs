//! Fuzz target: the sans-IO `proxy::Core` fed datagram sequences from several peers on a virtual clock.
//! The harness (and its invariants) is `sipedge::fuzzing::core_sequence`, shared with
//! `tests/fuzz_replay.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sipedge::fuzzing::core_sequence(data);
});

#!/bin/sh
# Runs one cargo-fuzz target for a bounded time.
#   tools/fuzz/run.sh <parse|frame|core> [seconds=60] [extra libFuzzer flags...]
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain
# (`rustup toolchain install nightly`; or RUSTC_BOOTSTRAP=1 with stable, see
# docs/SECURITY.md). Seeds the corpus from tests/fixtures (torture messages,
# committed corpus); new inputs go to tools/fuzz/corpus/<target>, crashes to
# tools/fuzz/artifacts/<target>. Turn a crash into a fixture by copying it to
# tests/fixtures/fuzz/crashes/<target>/ (tests/fuzz_replay.rs replays them).
set -eu
target=${1:?target: parse, frame or core}
secs=${2:-60}
[ $# -ge 2 ] && shift 2 || shift $#
root=$(cd "$(dirname "$0")/../.." && pwd)
fz="$root/tools/fuzz"
mkdir -p "$fz/corpus/$target" "$fz/seeds"
if [ ! -d "$fz/seeds/$target" ]; then
  (cd "$root" && FUZZ_SEED_DIR="$fz/seeds" cargo test -q --test fuzz_replay write_seed_corpus -- --ignored >/dev/null)
fi
toolchain=${FUZZ_TOOLCHAIN:-+nightly}
cd "$root"
# -s none: safe Rust needs no ASan to find panics, and runs ~3x faster;
# -a keeps debug assertions (integer overflow checks) on.
exec cargo $toolchain fuzz run --fuzz-dir tools/fuzz -s none -a -O "$target" \
  "$fz/corpus/$target" "$fz/seeds/$target" "$root/tests/fixtures/fuzz/corpus/$target" \
  -- -max_total_time="$secs" -dict="$fz/sip.dict" -timeout=10 -rss_limit_mb=2048 \
     -max_len=16384 -print_final_stats=1 "$@"

#!/usr/bin/env bash
# Hostile input for a fixed budget: the codec and framing property tests with many more
# cases than CI runs, in release mode. Prints the number of inputs tried; any panic
# fails the run.
#   CASES=200000 benches/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CASES="${CASES:-100000}"
export PROPTEST_CASES="$CASES"
start=$(date +%s)
cargo test --release --quiet --test codec_properties 2>&1 | tail -3
cargo test --release --quiet --lib net::framing::tests::arbitrary_streams_never_panic 2>&1 | tail -3
cargo test --release --quiet --lib authoriser::tests 2>&1 | tail -3
end=$(date +%s)
# codec_properties has 4 properties (arbitrary bytes, mutated messages with MTI and
# bitmap, mutated valid messages, round trip); plus framing and the authoriser model.
echo "fuzz: $((CASES * 6)) inputs tried ($CASES cases x 6 properties), 0 panics, $((end - start)) s"

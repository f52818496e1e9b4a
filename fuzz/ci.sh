#!/usr/bin/env bash
# A short bounded run of each fuzz target (issue 17), for .ci/run:
# FUZZ_SECS seconds per target (default 60) from the committed corpus
# (fuzz/corpus/<target>, read only: new inputs go to a scratch directory).
# Needs the nightly toolchain; installs cargo-fuzz from crates.io when it is
# missing. A machine without nightly is skipped with a message and exit
# status 0 (as scripts/asan.sh does). A crash fails the run; libFuzzer
# writes the input to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: no nightly toolchain (\`cargo +nightly\` is unavailable)."
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
secs="${FUZZ_SECS:-60}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in c_api parsers; do
    mkdir -p "$scratch/$target"
    echo "fuzz: $target for $secs s"
    rc=0
    cargo +nightly fuzz run -O "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=60 -print_final_stats=1 \
        >"$scratch/$target.log" 2>&1 || rc=$?
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
        "$scratch/$target.log" || true
    if [ "$rc" -ne 0 ]; then
        tail -n 80 "$scratch/$target.log"
        echo "fuzz: $target FAILED (status $rc)"
        exit 1
    fi
done
echo "fuzz: ok"

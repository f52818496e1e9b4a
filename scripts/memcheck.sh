#!/usr/bin/env bash
# Runs a representative slice of hakmem's unit, model and proptest suites
# under valgrind memcheck (issue 5, "Tooling"):
#
#   unit tests of the boxes  hakmem-platform, hakmem-pagemap, hakmem-tiny-sll,
#                            hakmem-superslab (and its tests/superslab.rs),
#                            hakmem-large-cache, hakmem-mid-mt
#   the facade               hakmem's unit tests and tests/{model,smoke,
#                            lifecycle,stress}.rs (stress bounded by
#                            HAKMEM_STRESS_SECS, default 1 here)
#
# Every test binary runs as
#   valgrind --tool=memcheck --error-exitcode=1 --leak-check=no
#            --suppressions=scripts/valgrind.supp
# so invalid reads/writes, uses of uninitialised values, bad syscall
# arguments and mismatched or invalid frees fail the run. Leaks are left to
# LeakSanitizer in scripts/asan.sh: the only leaks are deliberate test
# fixtures (see valgrind.supp), and valgrind names their inlined frames too
# inconsistently (`UnknownInlinedFun`) for a suppression that would not also
# hide real leaks. What memcheck can and cannot see here: hakmem gets its memory from
# mmap, which memcheck treats as defined, addressable memory; it does not see
# hakmem's blocks as heap blocks (hakmem has no valgrind client requests), so
# it checks hakmem's own code (stack, globals, syscalls, the std heap of the
# tests) rather than misuse of hakmem's blocks.
#
# Left out: tests/oom.rs (RLIMIT_AS would count valgrind's own mappings) and
# the hakmem-preload tests (under LD_PRELOAD, memcheck's malloc replacement in
# libc and hakmem's malloc would both serve the program).
#
# Environment: PROPTEST_CASES (default 16; suites with an explicit
# ProptestConfig keep theirs), HAKMEM_STRESS_SECS (default 1),
# MEMCHECK_JOBS (test threads per binary, default 2).
# Takes about a minute on 2 cores after the build.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
    echo "memcheck: installing valgrind"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq valgrind
fi
valgrind --version

export PROPTEST_CASES="${PROPTEST_CASES:-16}"
# RSS under memcheck includes valgrind's shadow memory, which does not
# shrink when hakmem returns pages: tests that bound RSS check hakmem's
# paths here but leave their RSS bounds to the plain `cargo test` run.
export HAKMEM_TEST_UNDER_MEMCHECK=1
export HAKMEM_STRESS_SECS="${HAKMEM_STRESS_SECS:-1}"
jobs="${MEMCHECK_JOBS:-2}"

packages=(hakmem-platform hakmem-pagemap hakmem-tiny-sll hakmem-superslab
          hakmem-large-cache hakmem-mid-mt hakmem)
# Test targets (lib unit tests are named after their crate) that are run.
wanted=" hakmem_platform hakmem_pagemap hakmem_tiny_sll hakmem_superslab superslab "
wanted+="hakmem_large_cache hakmem_mid_mt hakmem model smoke lifecycle stress "

args=()
for p in "${packages[@]}"; do args+=(-p "$p"); done
echo "memcheck: building the test binaries"
list=$(cargo test --no-run --lib --tests "${args[@]}" --message-format=json 2>/dev/null |
    sed -n 's/.*"target":{"kind":\["\([a-z-]*\)"\],"crate_types":\[[^]]*\],"name":"\([^"]*\)".*"executable":"\([^"]*\)".*/\2 \3/p')
if [ -z "$list" ]; then
    echo "memcheck: cargo built no test binaries" >&2
    cargo test --no-run --lib --tests "${args[@]}" >&2
    exit 1
fi

supp="scripts/valgrind.supp"
failed=()
ran=0
started=$(date +%s)
while read -r name exe; do
    case "$wanted" in *" $name "*) ;; *) continue ;; esac
    t0=$(date +%s)
    log=$(mktemp)
    if valgrind -q --tool=memcheck --error-exitcode=1 --leak-check=no \
        --suppressions="$supp" "$exe" --test-threads="$jobs" </dev/null >"$log" 2>&1; then
        echo "memcheck: ok     $name ($(($(date +%s) - t0)) s): $(grep -E '^test result' "$log" | tail -1)"
    else
        echo "memcheck: FAILED $name ($(($(date +%s) - t0)) s): $exe"
        cat "$log"
        failed+=("$name")
    fi
    rm -f "$log"
    ran=$((ran + 1))
done <<<"$list"

echo "memcheck: $ran test binaries in $(($(date +%s) - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "memcheck: FAILED: ${failed[*]}"
    exit 1
fi
[ "$ran" -ge 12 ] || { echo "memcheck: expected at least 12 test binaries, ran $ran" >&2; exit 1; }
echo "memcheck: ok"

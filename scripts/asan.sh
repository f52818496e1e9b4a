#!/usr/bin/env bash
# Runs a representative slice of hakmem's unit, model and proptest suites
# under AddressSanitizer (with LeakSanitizer), on the nightly toolchain
# (issue 5, "Tooling"). The same slice as scripts/memcheck.sh:
#
#   unit tests of the boxes  hakmem-platform, hakmem-pagemap, hakmem-tiny-sll,
#                            hakmem-superslab (and its tests/superslab.rs),
#                            hakmem-large-cache, hakmem-mid-mt
#   the facade               hakmem's unit tests and tests/{model,smoke,
#                            lifecycle,stress}.rs (stress bounded by
#                            HAKMEM_STRESS_SECS, default 1 here)
#
#   cargo +nightly test -Zbuild-std --target <host> ... with
#   RUSTFLAGS=-Zsanitizer=address, in target/asan (ASAN_TARGET_DIR)
#
# -Zbuild-std rebuilds the standard library instrumented too; it needs the
# nightly's rust-src component, which the script adds with rustup when it is
# missing. If that fails (no network), it runs without -Zbuild-std: hakmem
# and the tests are instrumented, the prebuilt std is not (out-of-bounds
# accesses inside std go unnoticed); the script says so.
#
# What ASan sees here: hakmem's own code (stack and globals), and every heap
# block of the tests that comes from the std allocator (ASan's malloc).
# hakmem's blocks come from mmap and are not poisoned: misuse of a hakmem
# block is not an ASan error (hakmem has no ASan poisoning hooks).
# LeakSanitizer suppressions (scripts/lsan.supp) cover deliberate leaks in
# test fixtures only.
#
# Left out: tests/oom.rs (ASan reserves terabytes of shadow address space,
# so RLIMIT_AS cannot be set), the hakmem-preload tests (an LD_PRELOADed
# allocator and ASan's malloc interceptors cannot both serve a program), and
# lifecycle's rss_falls_back_after_freeing_1_gib (its RSS bounds are
# calibrated without shadow memory).
#
# A machine without a nightly toolchain (`cargo +nightly` fails) is skipped
# with a message and exit status 0. About 3 minutes on 2 cores from clean
# (most of it building std), seconds when built.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "asan: SKIPPED: no nightly toolchain (\`cargo +nightly\` is unavailable)."
    echo "asan: to run it: rustup toolchain install nightly --profile minimal --component rust-src"
    exit 0
fi
cargo +nightly --version
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
case "$host" in
x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu) ;;
*)
    echo "asan: SKIPPED: AddressSanitizer is not set up for host $host here"
    exit 0
    ;;
esac

build_std=(-Zbuild-std)
sysroot=$(rustc +nightly --print sysroot)
if [ ! -d "$sysroot/lib/rustlib/src/rust/library" ]; then
    echo "asan: adding the nightly's rust-src component (for -Zbuild-std)"
    if ! rustup component add rust-src --toolchain nightly; then
        build_std=()
        echo "asan: NOTE: rust-src is not available: running without -Zbuild-std;"
        echo "asan: NOTE: the standard library is not instrumented in this run"
    fi
fi

export RUSTFLAGS="-Zsanitizer=address"
export CARGO_TARGET_DIR="${ASAN_TARGET_DIR:-target/asan}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1}"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"
export PROPTEST_CASES="${PROPTEST_CASES:-16}"
export HAKMEM_STRESS_SECS="${HAKMEM_STRESS_SECS:-1}"

started=$(date +%s)
cargo +nightly test "${build_std[@]}" --target "$host" \
    -p hakmem-platform -p hakmem-pagemap -p hakmem-tiny-sll -p hakmem-superslab \
    -p hakmem-large-cache -p hakmem-mid-mt -p hakmem \
    --lib --test superslab --test model --test smoke --test lifecycle --test stress \
    -- --skip rss_falls_back_after_freeing_1_gib
echo "asan: ok ($(($(date +%s) - started)) s${build_std[*]:+, with -Zbuild-std})"

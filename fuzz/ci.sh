#!/usr/bin/env bash
# The fuzzing step of CI (.ci/run): builds every fuzz target with the
# nightly toolchain (cargo-fuzz, libFuzzer) and replays the checked-in
# corpus of each (fuzz/seeds/<target>, and fuzz/regressions/<target>: the
# inputs that once crashed it) once, input by input, in bounded time. It
# does not fuzz: the long runs and their figures are in
# docs/robustness.md (Fuzzing). Installs cargo-fuzz when missing (about two
# minutes of build, once per machine).
set -euo pipefail
cd "$(dirname "$0")"
unset CARGO_TARGET_DIR
export CARGO_TERM_COLOR=never

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    timeout 900 cargo +nightly install cargo-fuzz --locked
fi

# No sanitizer: fedge has no unsafe code; debug assertions and overflow
# checks on, so an arithmetic overflow is a crash as it is under cargo test.
flags=(--features app --sanitizer none --debug-assertions)
timeout 2400 cargo +nightly fuzz build "${flags[@]}"

failed=0
replayed=0
for target in $(cargo +nightly fuzz list); do
    dirs=()
    for d in seeds regressions; do
        [ -d "$d/$target" ] && dirs+=("$d/$target")
    done
    [ ${#dirs[@]} -gt 0 ] || continue
    n=$(find "${dirs[@]}" -type f | wc -l)
    if timeout 300 cargo +nightly fuzz run "${flags[@]}" "$target" "${dirs[@]}" -- \
        -runs=0 -timeout=10 -rss_limit_mb=2048 >"/tmp/fuzz-replay-$target.log" 2>&1; then
        echo "fuzz replay $target: $n inputs ok"
        replayed=$((replayed + 1))
    else
        echo "fuzz replay $target: FAILED"
        tail -n 40 "/tmp/fuzz-replay-$target.log"
        failed=$((failed + 1))
    fi
done
echo "fuzz: $replayed passed, $failed failed"
[ "$failed" -eq 0 ]

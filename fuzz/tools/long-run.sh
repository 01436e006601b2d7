#!/usr/bin/env bash
# One bounded fuzzing run of one target, as recorded in
# docs/robustness.md (Fuzzing): `fuzz/tools/long-run.sh TARGET SECONDS [RUNS]`
# (stops at SECONDS or, when given, after RUNS executions, e.g. 10000000).
# Runs the binary `cargo +nightly fuzz build --features app --sanitizer none
# --debug-assertions` made (so no build lock is held while it fuzzes).
# New inputs go to fuzz/corpus/TARGET (not committed); the seeds and the
# regression inputs are read too. The log is fuzz/logs/TARGET.log.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$1
secs=$2
runs=${3:-}
bin=target/x86_64-unknown-linux-gnu/release/$target
if [ ! -x "$bin" ]; then
    echo "no $bin: run cargo +nightly fuzz build --features app --sanitizer none --debug-assertions first" >&2
    exit 2
fi
dirs=("corpus/$target" "seeds/$target")
[ -d "regressions/$target" ] && dirs+=("regressions/$target")
mkdir -p "corpus/$target" "artifacts/$target" logs
limit=()
[ -n "$runs" ] && limit=(-runs="$runs")
dict=()
case $target in
    sip_* | sdp_*) dict=(-dict=sip.dict) ;;
esac
exec "$bin" -artifact_prefix="artifacts/$target/" -max_total_time="$secs" -timeout=5 \
    -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 "${limit[@]}" "${dict[@]}" \
    "${dirs[@]}" >"logs/$target.log" 2>&1

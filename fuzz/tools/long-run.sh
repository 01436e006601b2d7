#!/usr/bin/env bash
# One bounded fuzzing run of one target, as recorded in
# docs/robustness/fuzz.md: `fuzz/tools/long-run.sh TARGET SECONDS`.
# New inputs go to fuzz/corpus/TARGET (not committed); the seeds and the
# regression inputs are read too. The log is fuzz/logs/TARGET.log.
set -euo pipefail
cd "$(dirname "$0")/.."
unset CARGO_TARGET_DIR
target=$1
secs=$2
dirs=("corpus/$target" "seeds/$target")
[ -d "regressions/$target" ] && dirs+=("regressions/$target")
mkdir -p "corpus/$target" logs
dict=()
features=()
case $target in
    sip_* | sdp_*) dict=(-dict=sip.dict) ;;
    dtmf | fpa_json | enrol_csv | config_toml) features=(--features app) ;;
esac
exec cargo +nightly fuzz run "${features[@]}" --sanitizer none --debug-assertions \
    "$target" "${dirs[@]}" -- -max_total_time="$secs" -timeout=5 \
    -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 "${dict[@]}" \
    >"logs/$target.log" 2>&1

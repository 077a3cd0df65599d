#!/usr/bin/env bash
# Fuzz smoke: runs every target of fuzz/ for a few seconds over its committed seed corpus and
# fails on any crash (the crash input is left in fuzz/artifacts/<target>/). The long runs and
# how to reproduce a crash are described in fuzz/README.md.
#
# Needs only the Rust toolchain and a C++ compiler (libFuzzer is built from source by the
# libfuzzer-sys crate). cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 enables them on
# the stable toolchain.
#
# Environment: FUZZ_SMOKE_SECS (default 5) seconds per target; FUZZ_TARGETS (default all)
# a space-separated list of targets.
set -euo pipefail

cd "$(dirname "$0")/.."
secs="${FUZZ_SMOKE_SECS:-5}"
version="0.13.2"

if ! cargo fuzz --version 2>/dev/null | grep -q "$version"; then
    cargo install cargo-fuzz --locked --version "$version"
fi
export RUSTC_BOOTSTRAP=1

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
cargo fuzz build -O

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in $targets; do
    # New corpus entries go to a scratch directory: the committed seeds stay as they are.
    mkdir -p "$scratch/$t"
    echo "== fuzz smoke: $t (${secs}s)"
    dict=()
    [ -f "fuzz/dicts/$t.dict" ] && dict=(-dict="fuzz/dicts/$t.dict")
    if ! cargo fuzz run -O "$t" "$scratch/$t" "fuzz/seeds/$t" -- "${dict[@]}" \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 2>"$scratch/$t.log"; then
        tail -n 40 "$scratch/$t.log" >&2
        failed+=("$t")
    else
        grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units)" "$scratch/$t.log" || true
    fi
done

if ((${#failed[@]})); then
    echo "fuzz smoke FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz smoke passed: $(echo $targets | wc -w) targets"

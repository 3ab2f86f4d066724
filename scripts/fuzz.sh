#!/usr/bin/env bash
# Fuzzes tidal's untrusted-input paths (tests/fuzz: request decoding, image decoding, base64 image
# fields) for a bounded time each, with libFuzzer's memory limits on, and prints executions and
# findings per target. Usage: scripts/fuzz.sh [SECONDS per target, default 60] [TARGET...]
# Needs a nightly Rust toolchain (rustup toolchain install nightly) and cargo-fuzz (installed
# here from crates.io once). Seeds are in tests/fuzz/corpus/<target>; what a run discovers goes to
# target/fuzz-corpus/<target>; crashes to tests/fuzz/artifacts/<target> (commit them as regressions).
source "$(dirname "$0")/common.sh"
seconds="${1:-60}"; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(request_decode image_decode base64_image_field)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2 \
  || die "cargo install cargo-fuzz failed (is crates.io reachable?)"
rustup run nightly rustc --version >/dev/null 2>&1 || die "cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly"
cd "$REPO_ROOT"
summary=()
for target in "${targets[@]}"; do
  work="target/fuzz-corpus/$target"; mkdir -p "$work"
  log "fuzzing $target for ${seconds}s"
  out="target/fuzz-$target.log"
  # -rss_limit_mb / -malloc_limit_mb: an input that makes tidal allocate beyond these is a finding.
  if cargo +nightly fuzz run --fuzz-dir tests/fuzz "$target" "$work" "tests/fuzz/corpus/$target" -- \
       -max_total_time="$seconds" -rss_limit_mb=1024 -malloc_limit_mb=512 -max_len=65536 -print_final_stats=1 \
       > "$out" 2>&1; then
    result="no crash"
  else
    result="FINDING (see $out and tests/fuzz/artifacts/$target)"
  fi
  runs="$(grep -o 'Done [0-9]* runs' "$out" | grep -o '[0-9]*' || echo '?')"
  cov="$(grep -o 'cov: [0-9]*' "$out" | tail -1 | grep -o '[0-9]*' || echo '?')"
  summary+=("$(printf '%-20s %8ss %12s runs %8s edges  %s' "$target" "$seconds" "$runs" "$cov" "$result")")
done
printf '%s\n' "${summary[@]}"

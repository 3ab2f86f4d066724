#!/usr/bin/env bash
# All of tidal's set-up, idempotent: Kafka's jars, ONNX Runtime's library, the demo models, and a
# release build of tidal. Installs go under $TIDAL_HOME (default ~/.cache/tidal), outside the repo.
source "$(dirname "$0")/common.sh"
for tool in cargo python3 java mvn; do
  command -v "$tool" >/dev/null || die "'$tool' is required on PATH (Rust, Python 3, Java 17 and Maven)"
done
bash "$REPO_ROOT/scripts/setup-kafka.sh"
bash "$REPO_ROOT/scripts/setup-onnxruntime.sh"
bash "$REPO_ROOT/scripts/setup-models.sh"
log "building tidal (release)"
(cd "$REPO_ROOT" && cargo build --release --locked --bins) || die "cargo build failed"
log "set-up complete (cache: $TIDAL_HOME)"

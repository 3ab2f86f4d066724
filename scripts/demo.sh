#!/usr/bin/env bash
# The whole demo: set-up, a local Kafka, topics, `tidal serve` with all three models, sample
# requests (sentiment texts, two of them bad; face pairs as base64 JSON; OCR pages as raw PNG
# records), results and dead letters printed, metrics sampled, everything stopped cleanly.
source "$(dirname "$0")/common.sh"
bash "$REPO_ROOT/scripts/setup.sh"
port="${TIDAL_DEMO_PORT:-9092}"
brokers="127.0.0.1:$port"
metrics="127.0.0.1:${TIDAL_DEMO_METRICS_PORT:-9464}"
tidal="$REPO_ROOT/target/release/tidal"
bash "$REPO_ROOT/scripts/kafka.sh" start "$port" >/dev/null
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then kill -TERM "$serve_pid"; wait "$serve_pid" || true; fi
  bash "$REPO_ROOT/scripts/kafka.sh" stop "$port"
}
trap cleanup EXIT

log "creating topics"
"$tidal" topics apply --brokers "$brokers"
log "starting tidal serve"
"$tidal" serve --brokers "$brokers" --instance demo --metrics-listen "$metrics" &
serve_pid=$!
log "producing $(wc -l < "$REPO_ROOT/scripts/demo-requests.jsonl") requests (two are bad input)"
"$tidal" produce --brokers "$brokers" --topic tidal.requests.sentiment "$REPO_ROOT/scripts/demo-requests.jsonl"
log "results (tidal.results.sentiment, read_committed):"
"$tidal" consume --brokers "$brokers" --topic tidal.results.sentiment --max 7 --idle 60s
faces="$TIDAL_HOME/testdata/faces"
log "producing 2 face-match requests (base64 JSON: same person, different people)"
python3 - "$faces" <<'PY' | "$tidal" produce --brokers "$brokers" --topic tidal.requests.face-match
import base64, json, sys
photo = lambda name: base64.b64encode(open(f"{sys.argv[1]}/{name}", "rb").read()).decode()
print(json.dumps({"id": "pair-same", "image_a": photo("obama.jpg"), "image_b": photo("obama2.jpg")}))
print(json.dumps({"id": "pair-different", "image_a": photo("obama.jpg"), "image_b": photo("biden.jpg")}))
PY
log "face-match results (tidal.results.face-match):"
"$tidal" consume --brokers "$brokers" --topic tidal.results.face-match --max 2 --idle 60s
log "producing 2 OCR requests (raw PNG records with a content-type header)"
"$tidal" produce --brokers "$brokers" --topic tidal.requests.ocr \
  --image "$REPO_ROOT/tests/golden/ocr/sans-28.png" --image "$REPO_ROOT/tests/golden/ocr/sans-26-rotated.png"
log "OCR results (tidal.results.ocr):"
"$tidal" consume --brokers "$brokers" --topic tidal.results.ocr --max 2 --idle 60s
log "dead letters (tidal.dlq):"
"$tidal" consume --brokers "$brokers" --topic tidal.dlq --headers --max 2 --idle 30s
log "metrics (http://$metrics/metrics):"
python3 - "$metrics" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith(("tidal_records_in_total", "tidal_results_out_total", "tidal_dead_letters_total", "tidal_transactions_total")):
        print("  " + line)
PY
log "stopping tidal serve (SIGTERM)"
kill -TERM "$serve_pid"; wait "$serve_pid"; serve_pid=""
log "demo complete"

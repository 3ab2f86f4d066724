#!/usr/bin/env bash
# Signals end to end: `tidal serve` runs sentiment over a commentary feed; `tidal scale run`
# (dry-run actuator, so nothing is started) raises the replica floor before any backlog — first
# from the share of excited (positive) commentary in tidal's own results, then from a "wicket"
# event on tidal.scale.signals. Prints the scaler's decisions; everything stopped cleanly.
source "$(dirname "$0")/common.sh"
bash "$REPO_ROOT/scripts/setup.sh"
port="${TIDAL_DEMO_PORT:-9092}"
brokers="127.0.0.1:$port"
tidal="$REPO_ROOT/target/release/tidal"
work="$(mktemp -d)"
bash "$REPO_ROOT/scripts/kafka.sh" start "$port" >/dev/null
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  done
  bash "$REPO_ROOT/scripts/kafka.sh" stop "$port"
  rm -rf "$work"
}
trap cleanup EXIT

log "creating topics"
"$tidal" topics apply --brokers "$brokers"
cat > "$work/scale.toml" <<TOML
[watch]
group = "tidal-signals-demo"
topics = ["tidal.requests.sentiment"]
interval = "1s"
metrics_listen = ""
decisions_topic = "tidal.scale.decisions"

[policies]
min_replicas = 1
max_replicas = 4
[policies.damping]
stabilization = "1s"

[actuator]
kind = "dry-run"

[[signals]]                       # excited commentary: most results positive over a minute
topic = "tidal.results.sentiment"
share = { field = "result.label", equals = "positive", above = 0.6, window = "1m", min_records = 10 }
min_replicas = 2
hold = "10m"

[[signals]]                       # a wicket: viewers follow within minutes
topic = "tidal.scale.signals"
when = { field = "type", equals = "wicket" }
min_replicas = 4
hold = "10m"
TOML
log "starting tidal serve (sentiment) and tidal scale run (dry-run actuator, two signal rules)"
"$tidal" serve --brokers "$brokers" --app signals-demo --instance demo --models sentiment --metrics-listen "" --workers 1 &
pids+=($!)
"$tidal" scale run --brokers "$brokers" --config "$work/scale.toml" 2>"$work/scale.log" &
pids+=($!)
for _ in $(seq 60); do grep -q "scaler watching" "$work/scale.log" && break; sleep 0.5; done
log "commentary through the sentiment model: 12 excited lines"
for i in $(seq 12); do
  echo "{\"id\": \"c$i\", \"text\": \"What a shot! Brilliant, simply magnificent. I loved it.\"}"
done | "$tidal" produce --brokers "$brokers" --topic tidal.requests.sentiment
"$tidal" consume --brokers "$brokers" --topic tidal.results.sentiment --max 12 --idle 60s >/dev/null
sleep 3
log "a wicket on the match feed (tidal.scale.signals)"
echo '{"type": "wicket", "over": 31}' | "$tidal" produce --brokers "$brokers" --topic tidal.scale.signals
sleep 3
log "the scaler's decisions (tidal.scale.decisions): policy, replicas, reason"
"$tidal" consume --brokers "$brokers" --topic tidal.scale.decisions --max 2 --idle 20s \
  | python3 -c 'import json, sys
for line in sys.stdin:
    d = json.loads(line)
    print("  {}: {} -> {} replicas, lag {}: {}".format(d["policy"], d["from"], d["to"], d["lag"], d["reason"]))'
log "signals demo complete"

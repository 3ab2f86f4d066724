#!/usr/bin/env bash
# The long fault suite: every scenario of tests/faults.rs in its long form (SIGKILL + restart ×10,
# rebalance storm ×4, overload at 3× capacity for 2 minutes, ...), the 3-node cluster scenarios of
# tests/cluster.rs (2,000 requests) and the 12-megapixel photo backlog of tests/photo_backlog.rs,
# each checked exactly-once in read_committed, then a per-scenario table (requests, results,
# duplicates, missing, recovery, RSS).
# Usage: scripts/faults.sh [--soak DURATION]   (e.g. --soak 30m: the soak at 70 % capacity)
source "$(dirname "$0")/common.sh"
soak="20s"
while [ $# -gt 0 ]; do
  case "$1" in
    --soak) soak="${2:?--soak needs a duration, e.g. 30m}"; shift 2 ;;
    *) die "usage: scripts/faults.sh [--soak DURATION]" ;;
  esac
done
bash "$REPO_ROOT/scripts/setup.sh"
start_local_kafka "${TIDAL_FAULTS_PORT:-19892}"
report="$REPO_ROOT/target/faults/report.jsonl"
mkdir -p "$(dirname "$report")"; rm -f "$report"
cd "$REPO_ROOT"
status=0
NO_COLOR=1 TIDAL_TEST_BROKERS="$LOCAL_KAFKA" TIDAL_FAULTS_LONG=1 TIDAL_SOAK="$soak" TIDAL_FAULT_REPORT="$report" \
  cargo test --release --locked --features broker-tests --no-fail-fast --test faults --test cluster \
  --test photo_backlog -- --test-threads 1 --nocapture \
  2> >(grep -v ' INFO ' >&2) || status=$?
python3 - "$report" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])] if sys.argv[1] else []
head = f"{'scenario':34} {'requests':>8} {'results':>8} {'dup':>4} {'missing':>7} {'extra':>5}  recovery / notes"
print("\n" + head + "\n" + "-" * len(head))
for r in rows:
    notes = []
    if r.get("recovery_s") is not None: notes.append(f"{r['recovery_s']:.1f} s to the next result")
    if r.get("longest_gap_s") is not None: notes.append(f"longest gap {r['longest_gap_s']:.1f} s")
    if "all_answered_s" in r: notes.append(f"all answered in {r['all_answered_s']:.1f} s")
    if "exits" in r: notes.append(f"processor exits {r['exits']}")
    if "rss_max_mib" in r and "capacity_per_s" not in r:
        notes.append(f"RSS {r.get('rss_start_mib') or 0:.0f} → max {r['rss_max_mib']:.0f} → end "
                     f"{r.get('rss_end_mib') or 0:.0f} MiB (bound {r.get('bound_mib', 0):.0f})")
    if "capacity_per_s" in r:
        notes.append(f"capacity {r['capacity_per_s']:.0f}/s, offered {r['offered_per_s']:.0f}/s, "
                     f"answered {r['answered_per_s_under_load']:.0f}/s; RSS {r['rss_start_mib']:.0f} → "
                     f"max {r['rss_max_mib']:.0f} → end {r['rss_end_mib']:.0f} MiB")
    print(f"{r['scenario']:34} {r['requests']:>8} {r['results']:>8} {r['duplicates']:>4} {r['missing']:>7} "
          f"{r['unexpected']:>5}  {'; '.join(notes)}")
PY
exit "$status"

#!/usr/bin/env bash
# A 3-node Apache Kafka cluster (KRaft, each node broker+controller, static voters) on 127.0.0.1
# for fault drills on a replicated cluster: topics at replication 3 with min.insync.replicas 2,
# the offsets and transaction-state topics likewise. Data in a temporary directory.
# Usage: kafka-cluster.sh start|stop|status BASE_PORT
#        kafka-cluster.sh kill|stop-node|start-node|pause|resume BASE_PORT NODE   (NODE 1..3)
# Node N listens on BASE_PORT+10(N-1) (clients) and that +1 (controller). `start` waits until all
# three serve and prints the bootstrap list.
source "$(dirname "$0")/common.sh"
cmd="${1:-}"; base="${2:-29092}"; node="${3:-}"
root="${TMPDIR:-/tmp}/tidal-kafka-cluster-$base"
client_port() { echo $((base + 10 * ($1 - 1))); }
controller_port() { echo $(($(client_port "$1") + 1)); }
dir() { echo "$root/node$1"; }
pid_of() { cat "$(dir "$1")/pid" 2>/dev/null; }
is_running() { local pid; pid="$(pid_of "$1")"; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
java_opts=(-Xms128m "-Xmx${TIDAL_KAFKA_HEAP:-384m}" -XX:+UseG1GC -Djava.awt.headless=true
  "-Dlog4j.configuration=file:$root/log4j.properties" -cp "$KAFKA_LIBS/*")
bootstrap() { echo "127.0.0.1:$(client_port 1),127.0.0.1:$(client_port 2),127.0.0.1:$(client_port 3)"; }

configure() {
  local n="$1" d; d="$(dir "$n")"; mkdir -p "$d/data"
  local voters="1@127.0.0.1:$(controller_port 1),2@127.0.0.1:$(controller_port 2),3@127.0.0.1:$(controller_port 3)"
  cat > "$d/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(client_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(client_port "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$d/data
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
auto.create.topics.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
PROPS
}

launch() {
  local n="$1" d; d="$(dir "$n")"
  : > "$d/kafka.log"
  nohup java "${java_opts[@]}" kafka.Kafka "$d/server.properties" >> "$d/kafka.log" 2>&1 &
  echo $! > "$d/pid"
}

wait_serving() {
  local n="$1" d; d="$(dir "$n")"
  for _ in $(seq 1 180); do
    if grep -q "Transition from STARTING to STARTED" "$d/kafka.log" 2>/dev/null && port_open "$(client_port "$n")"; then return; fi
    is_running "$n" || die "Kafka node $n exited during start-up: $(tail -20 "$d/kafka.log")"
    sleep 0.5
  done
  die "Kafka node $n did not start within 90 s; see $d/kafka.log"
}

start() {
  [ -f "$KAFKA_LIBS/.complete" ] || die "Kafka's jars are missing: run scripts/setup-kafka.sh first"
  for n in 1 2 3; do
    for port in "$(client_port "$n")" "$(controller_port "$n")"; do
      for _ in $(seq 1 50); do port_open "$port" || break; sleep 0.2; done
      port_open "$port" && die "port $port is taken; pass another BASE_PORT"
    done
  done
  rm -rf "$root"; mkdir -p "$root"
  printf 'log4j.rootLogger=WARN, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\nlog4j.appender.stdout.layout=org.apache.log4j.PatternLayout\nlog4j.appender.stdout.layout.ConversionPattern=[%%d] %%p %%m (%%c)%%n\nlog4j.logger.kafka.server.BrokerServer=INFO\n' > "$root/log4j.properties"
  local cluster_id="-"
  while [ "${cluster_id:0:1}" = "-" ]; do
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  done
  for n in 1 2 3; do
    configure "$n"
    java "${java_opts[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$(dir "$n")/server.properties" \
      > "$(dir "$n")/format.log" 2>&1 || die "formatting node $n failed: $(tail -5 "$(dir "$n")/format.log")"
  done
  for n in 1 2 3; do launch "$n"; done
  for n in 1 2 3; do wait_serving "$n"; done
  log "Kafka $KAFKA_VERSION cluster of 3 up on $(bootstrap) (data in $root)"
  bootstrap
}

stop() {
  local pids=() pid
  for n in 1 2 3; do
    pid="$(pid_of "$n")"
    if [ -n "$pid" ]; then kill -CONT "$pid" 2>/dev/null || true; kill -KILL "$pid" 2>/dev/null || true; pids+=("$pid"); fi
  done
  # Wait until they are gone, so that the ports are free for the next start.
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$root"
  log "Kafka cluster on $base stopped"
}

need_node() { [[ "$node" =~ ^[123]$ ]] || die "name a node: 1, 2 or 3"; }

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) for n in 1 2 3; do is_running "$n" && echo "node $n running on 127.0.0.1:$(client_port "$n")" || echo "node $n stopped"; done ;;
  kill) need_node; kill -KILL "$(pid_of "$node")"; log "node $node killed (SIGKILL)" ;;
  stop-node) need_node; kill -TERM "$(pid_of "$node")"; while is_running "$node"; do sleep 0.2; done; log "node $node stopped" ;;
  start-node) need_node; is_running "$node" && die "node $node is running"; launch "$node"; wait_serving "$node"; log "node $node up" ;;
  pause) need_node; kill -STOP "$(pid_of "$node")"; log "node $node paused (SIGSTOP)" ;;
  resume) need_node; kill -CONT "$(pid_of "$node")"; log "node $node resumed" ;;
  *) die "usage: kafka-cluster.sh start|stop|status BASE_PORT | kill|stop-node|start-node|pause|resume BASE_PORT NODE" ;;
esac

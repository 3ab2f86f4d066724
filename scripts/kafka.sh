#!/usr/bin/env bash
# Starts or stops a single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1 with its data
# in a temporary directory. Usage: kafka.sh start|stop|restart|pause|resume|status [PORT]
# (PORT default 9092). `start` and `restart` wait until the broker answers and print its address;
# `restart` keeps the data, `pause`/`resume` freeze and thaw the broker (SIGSTOP/SIGCONT).
# With TIDAL_KAFKA_SASL_USERS="user:password[,user:password...]", `start` also opens a
# SASL_PLAINTEXT listener on PORT+2 (SCRAM-SHA-512 and PLAIN, those users) and turns on ACLs
# (StandardAuthorizer): the PLAINTEXT listener's clients (User:ANONYMOUS) stay super users, SASL
# users get only what ACLs grant them.
# With TIDAL_KAFKA_TLS_DIR=DIR, `start` also opens an SSL listener on PORT+3 with a certificate
# for 127.0.0.1 signed by a CA made for the occasion (openssl): DIR/ca.pem is what clients trust.
source "$(dirname "$0")/common.sh"
cmd="${1:-}"; port="${2:-${TIDAL_KAFKA_PORT:-9092}}"
controller_port=$((port + 1))
sasl_port=$((port + 2))
tls_port=$((port + 3))
state="${TMPDIR:-/tmp}/tidal-kafka-$port"

java_opts=(-Xms256m "-Xmx${TIDAL_KAFKA_HEAP:-512m}" -XX:+UseG1GC -Djava.awt.headless=true
  "-Dlog4j.configuration=file:$state/log4j.properties" -cp "$KAFKA_LIBS/*")

is_running() { [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

start() {
  if is_running; then log "Kafka already running on 127.0.0.1:$port (pid $(cat "$state/pid"))"; echo "127.0.0.1:$port"; return; fi
  [ -f "$KAFKA_LIBS/.complete" ] || die "Kafka's jars are missing: run scripts/setup-kafka.sh first"
  port_open && die "port $port is taken by another process; pass another port: kafka.sh start PORT"
  rm -rf "$state"; mkdir -p "$state/data"
  cat > "$state/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$state/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
PROPS
  local scram_args=()
  if [ -n "${TIDAL_KAFKA_SASL_USERS:-}" ]; then
    local plain_users="" pair user password
    IFS=',' read -ra pairs <<< "$TIDAL_KAFKA_SASL_USERS"
    for pair in "${pairs[@]}"; do
      user="${pair%%:*}"; password="${pair#*:}"
      plain_users+=" user_${user}=\"${password}\""
      scram_args+=(--add-scram "SCRAM-SHA-512=[name=${user},password=${password}]")
    done
    sed -i "s|^listeners=.*|&,SASL_PLAINTEXT://127.0.0.1:$sasl_port|; s|^advertised.listeners=.*|&,SASL_PLAINTEXT://127.0.0.1:$sasl_port|; s|^listener.security.protocol.map=.*|&,SASL_PLAINTEXT:SASL_PLAINTEXT|" "$state/server.properties"
    cat >> "$state/server.properties" <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required${plain_users};
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
PROPS
  fi
  cat > "$state/log4j.properties" <<'L4J'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
L4J
  # A KRaft cluster id is 16 random bytes in unpadded base64url (22 characters). One that starts
  # with '-' would be read as an option by kafka-storage's argument parser, so draw again.
  local cluster_id="-"
  while [ "${cluster_id:0:1}" = "-" ]; do
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  done
  [ "${#cluster_id}" -eq 22 ] || die "could not make a cluster id from /dev/urandom (got '$cluster_id')"
  if [ -n "${TIDAL_KAFKA_TLS_DIR:-}" ]; then
    local tls="$TIDAL_KAFKA_TLS_DIR"; mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tidal test CA" \
      -keyout "$tls/ca.key" -out "$tls/ca.pem" >/dev/null 2>&1 || die "openssl could not make the test CA"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$tls/broker.key" -out "$tls/broker.csr" \
      >/dev/null 2>&1 || die "openssl could not make the broker key"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$tls/san.ext"
    openssl x509 -req -in "$tls/broker.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
      -extfile "$tls/san.ext" -out "$tls/broker.pem" >/dev/null 2>&1 || die "openssl could not sign the broker certificate"
    openssl pkcs8 -topk8 -nocrypt -in "$tls/broker.key" -out "$tls/broker.pk8" || die "openssl pkcs8 failed"
    cat "$tls/broker.pk8" "$tls/broker.pem" > "$tls/broker-keystore.pem"
    sed -i "s|^listeners=.*|&,SSL://127.0.0.1:$tls_port|; s|^advertised.listeners=.*|&,SSL://127.0.0.1:$tls_port|; s|^listener.security.protocol.map=.*|&,SSL:SSL|" "$state/server.properties"
    cat >> "$state/server.properties" <<PROPS
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$tls/broker-keystore.pem
PROPS
  fi
  java "${java_opts[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$state/server.properties" --standalone "${scram_args[@]}" \
    > "$state/format.log" 2>&1 || die "formatting Kafka's storage failed: $(tail -5 "$state/format.log")"
  launch
}

# Starts the broker process on the formatted data in $state and waits until it serves.
launch() {
  : > "$state/kafka.log"
  nohup java "${java_opts[@]}" kafka.Kafka "$state/server.properties" >> "$state/kafka.log" 2>&1 &
  echo $! > "$state/pid"
  for _ in $(seq 1 120); do
    if grep -q "Transition from STARTING to STARTED" "$state/kafka.log" 2>/dev/null && port_open; then
      log "Kafka $KAFKA_VERSION up on 127.0.0.1:$port (data in $state)"; echo "127.0.0.1:$port"; return
    fi
    is_running || die "Kafka exited during start-up: $(tail -20 "$state/kafka.log")"
    sleep 0.5
  done
  die "Kafka did not start within 60 s; see $state/kafka.log"
}

# Stops the broker process (SIGTERM, then SIGKILL after 30 s); the data stays.
halt() {
  local pid; pid="$(cat "$state/pid")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && { log "Kafka did not stop in 30 s; killing it"; kill -KILL "$pid" 2>/dev/null || true; }
  return 0
}

stop() {
  if ! is_running; then log "Kafka on port $port is not running"; rm -rf "$state"; return; fi
  kill -CONT "$(cat "$state/pid")" 2>/dev/null || true
  halt
  rm -rf "$state"
  log "Kafka on port $port stopped"
}

# Fault drills: the broker stopped and started again on the same data, or frozen and thawed.
restart() {
  is_running || die "Kafka on port $port is not running"
  halt
  log "Kafka on port $port stopped (data kept); starting it again"
  launch
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  restart) restart ;;
  pause) is_running || die "Kafka on port $port is not running"; kill -STOP "$(cat "$state/pid")"; log "Kafka on port $port paused (SIGSTOP)" ;;
  resume) is_running || die "Kafka on port $port is not running"; kill -CONT "$(cat "$state/pid")"; log "Kafka on port $port resumed" ;;
  status) if is_running; then echo "running on 127.0.0.1:$port (pid $(cat "$state/pid"))"; else echo "stopped"; exit 1; fi ;;
  *) die "usage: kafka.sh start|stop|restart|pause|resume|status [PORT]" ;;
esac

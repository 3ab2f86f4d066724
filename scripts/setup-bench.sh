#!/usr/bin/env bash
# The baselines of `tidal bench` (idempotent): the Python ones' packages in the set-up venv, and
# the Kafka Streams one built with Maven (its jars cached in ~/.m2, rebuilt only when its sources
# change). Run after scripts/setup.sh (which creates the venv with onnxruntime and tokenizers).
source "$(dirname "$0")/common.sh"
marker="$TIDAL_VENV/.bench-complete-2"
if [ -f "$marker" ]; then
  log "baseline packages present ($TIDAL_VENV)"
else
  [ -x "$TIDAL_VENV/bin/pip" ] || die "the set-up venv is missing: run scripts/setup.sh first"
  log "installing the Python baselines' packages (confluent-kafka, flask, gunicorn; rapidocr, OpenCV for the image models)"
  "$TIDAL_VENV/bin/pip" install -q --disable-pip-version-check \
    confluent-kafka==2.16.1 flask==3.1.3 gunicorn==27.0.1 "onnxruntime==$ORT_VERSION" \
    rapidocr==3.10.0 opencv-python-headless==5.0.0.93 pyclipper==1.4.0 shapely==2.2.0 omegaconf==2.4.0 \
    pyyaml==6.0.4 tqdm==4.70.1 requests==2.34.2 colorlog==6.12.0 six==1.17.0 pillow==13.0.0 \
    || die "pip could not install the baselines' packages (is PyPI reachable?)"
  touch "$marker"
fi

kstreams="$REPO_ROOT/benches/baselines/kstreams"
jar="$kstreams/target/kstreams-inference-1.0.jar"
if [ -f "$jar" ] && [ -z "$(find "$kstreams/pom.xml" "$kstreams/src" -newer "$jar" -print -quit)" ]; then
  log "Kafka Streams baseline built ($jar)"
else
  command -v mvn >/dev/null || die "Maven (mvn) is required to build the Kafka Streams baseline: apt-get install -y maven"
  log "building the Kafka Streams baseline (kafka-streams $KAFKA_VERSION, onnxruntime, tokenizers from Maven Central)"
  mvn -q -B -f "$kstreams/pom.xml" -Dkafka.version="$KAFKA_VERSION" clean package \
    || die "Maven could not build $kstreams (is Maven Central reachable?)"
fi

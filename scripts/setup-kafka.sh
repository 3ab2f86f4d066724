#!/usr/bin/env bash
# Installs Apache Kafka's broker jars from Maven Central into $TIDAL_HOME (once).
# Maven resolves the broker's runtime dependencies from its POM: no tarball, no CDN.
source "$(dirname "$0")/common.sh"
if [ -f "$KAFKA_LIBS/.complete" ]; then log "Kafka $KAFKA_VERSION jars present ($KAFKA_LIBS)"; exit 0; fi
command -v mvn >/dev/null || die "Maven (mvn) is required to fetch Kafka's jars: apt-get install -y maven"
command -v java >/dev/null || die "Java 17+ is required to run Kafka: apt-get install -y openjdk-17-jre-headless"
log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.tidal</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
POM
mkdir -p "$KAFKA_LIBS"
mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" \
  || die "Maven could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION (is Maven Central reachable?)"
touch "$KAFKA_LIBS/.complete"
log "Kafka jars installed: $(ls "$KAFKA_LIBS" | wc -l) files"

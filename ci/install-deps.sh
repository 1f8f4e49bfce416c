#!/usr/bin/env bash
# System packages the test suite needs (Debian). Python packages go into the venv via `make`.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    nginx chromium wrk aria2 curl git openssh-server openssh-client procps ca-certificates >/dev/null
# Debian starts nginx on install on some images; the tests run their own.
service nginx stop >/dev/null 2>&1 || true

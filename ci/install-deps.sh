#!/usr/bin/env bash
# System packages the test suite needs (Debian). Python packages go into the venv via `make`.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# A mirror hiccup must not fail CI: three tries, 10 s apart.
retry() {
    local try
    for try in 1 2 3; do
        "$@" && return 0
        echo "install-deps: '$*' failed (try $try of 3)" >&2
        sleep 10
    done
    return 1
}

retry apt-get update -qq
retry apt-get install -y -qq --no-install-recommends \
    nginx chromium wrk aria2 curl git openssh-server openssh-client procps ca-certificates >/dev/null
# Debian starts nginx on install on some images; the tests run their own.
service nginx stop >/dev/null 2>&1 || true

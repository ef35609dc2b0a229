#!/usr/bin/env bash
# Runs the proxy benchmark (see bench/README.md). Needs sysbench and, for the baseline, haproxy.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && ! { command -v sysbench && command -v openssl; } >/dev/null; then apt-get install -y -qq sysbench haproxy openssl >/dev/null; fi
npx tsc -p .
exec node dist/bench/run.js "$@"

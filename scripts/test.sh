#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the integration tests need when it is absent
# (as root, from Debian packages: MariaDB, its client, PyMySQL, Galera and rsync for the Galera
# suite), builds, and runs every test file with node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
suite="${1:-all}"

need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
/usr/bin/python3 -c "import pymysql" >/dev/null 2>&1 || need+=(python3-pymysql)
[ -f /usr/lib/galera/libgalera_smm.so ] || need+=(galera-4)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ "$suite" != unit ] && [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing test dependencies: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing test dependencies: ${need[*]} (install them with apt-get as root)" >&2
    exit 1
  fi
fi

[ -d node_modules ] || npm ci --no-audit --no-fund
npx tsc -p .

if [ "$suite" = unit ]; then
  files=$(find dist/test -name '*.test.js' -not -path '*/integration/*' | sort)
else
  files=$(find dist/test -name '*.test.js' | sort)
fi
# Integration files each start their own servers; two at a time keeps a 2-core machine responsive.
exec node --test --test-concurrency=2 --test-timeout=300000 $files

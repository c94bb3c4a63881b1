#!/usr/bin/env bash
# Fetches chDB (ClickHouse in-process) for hogpipe's embedded warehouse: `libchdb.so` from the npm
# package @chdb/lib-linux-x64-gnu, pinned, into the cache dir (never into the repository).
# Idempotent: does nothing when the library is already there. Prints the library's path.
#   bash scripts/install-chdb.sh            # installs, prints the path
# hogpipe finds it at $HOGPIPE_CHDB_LIB, else at the path this script prints (see warehouse/src/chdb.rs).
set -euo pipefail
source "$(dirname "$0")/env.sh" >/dev/null
CHDB_VERSION="${HOGPIPE_CHDB_VERSION:-26.7.3-stable.1}"
dest="$HOGPIPE_CACHE/chdb/$CHDB_VERSION"
lib="$dest/libchdb.so"
if [ -s "$lib" ]; then
  echo "$lib"
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "install-chdb: npm is needed to fetch chDB; installing Debian's npm" >&2
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm >&2
  else
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm >&2
  fi
fi
tmp="$(mktemp -d "$HOGPIPE_CACHE/chdb-dl.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "install-chdb: fetching @chdb/lib-linux-x64-gnu@$CHDB_VERSION (about 170 MB) ..." >&2
(cd "$tmp" && npm pack --silent "@chdb/lib-linux-x64-gnu@$CHDB_VERSION" >/dev/null)
tar -xzf "$tmp"/chdb-lib-linux-x64-gnu-*.tgz -C "$tmp" package/libchdb.so
mkdir -p "$dest"
mv "$tmp/package/libchdb.so" "$lib.partial"
mv "$lib.partial" "$lib"
echo "install-chdb: installed $lib" >&2
echo "$lib"

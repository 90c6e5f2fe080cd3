#!/usr/bin/env bash
# Builds the Debian package: target/debian/statemanager_<version>-1_<arch>.deb
#
#   deploy/build-deb.sh            # release build + package
#   deploy/build-deb.sh --no-build # package an existing target/release/statemanager
#
# Needs cargo-deb (`cargo install cargo-deb`; installed here if missing) and dpkg-dev's
# tools for dependency detection (dpkg-shlibdeps; without them `$auto` is skipped with a
# warning). Extra arguments are passed to cargo deb.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "== installing cargo-deb" >&2
    nice -n 10 cargo install cargo-deb --locked
fi

echo "== cargo deb" >&2
deb=$(nice -n 10 cargo deb -p statemanager --locked "$@" | tail -n 1)
echo "== $deb" >&2
dpkg-deb --info "$deb" >&2
dpkg-deb --contents "$deb" >&2
echo "$deb"

#!/usr/bin/env bash
# Re-fetches the API reference renderer served at /docs (Redoc's standalone bundle) from the npm
# registry at the pinned version, checks it against the pinned integrity, and writes it with its
# license into crates/strata-http/assets/docs/, where the server embeds it (`include_bytes!`).
# Only needed to change the version: `cargo build` uses the committed copy and needs no Node.
#
#   scripts/vendor-docs-renderer.sh            # the pinned version
#   scripts/vendor-docs-renderer.sh 3.0.2      # another version: prints its integrity to pin here
set -euo pipefail
cd "$(dirname "$0")/.."

PINNED_VERSION="3.0.1"
# npm's `dist.integrity` of redoc@3.0.1 (`npm view redoc@3.0.1 dist.integrity`).
PINNED_INTEGRITY="sha512-KDfoKaYW19LCl4YStgBnwlaNjYEFfs5zCNt1s1WZ2YM5u8d26Yuzd2l43fZO851ZsgIMe/D640fDJkD8eaRQKQ=="

version="${1:-$PINNED_VERSION}"
dest="crates/strata-http/assets/docs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command -v npm >/dev/null || { echo "npm is needed (Debian: apt-get install -y npm)" >&2; exit 1; }
(cd "$work" && npm pack --silent "redoc@$version" >/dev/null)
tarball="$work/redoc-$version.tgz"
integrity="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$version" = "$PINNED_VERSION" ] && [ "$integrity" != "$PINNED_INTEGRITY" ]; then
    echo "redoc@$version does not match the pinned integrity:" >&2
    echo "  pinned  $PINNED_INTEGRITY" >&2
    echo "  fetched $integrity" >&2
    exit 1
fi
tar -xzf "$tarball" -C "$work"
mkdir -p "$dest"
cp "$work/package/bundles/redoc.standalone.js" "$dest/redoc.standalone.js"
cp "$work/package/LICENSE" "$dest/LICENSE"
printf '%s\n' "$version" >"$dest/VERSION"
echo "wrote $dest/redoc.standalone.js (redoc@$version, $(wc -c <"$dest/redoc.standalone.js") bytes)"
if [ "$version" != "$PINNED_VERSION" ]; then
    echo "to pin it: PINNED_VERSION=\"$version\" and PINNED_INTEGRITY=\"$integrity\" in $0"
fi

#!/usr/bin/env bash
# Re-fetches the API reference renderer served at /docs (Stoplight Elements' web component: one
# script and one stylesheet) from the npm registry at the pinned version, checks the package
# against its pinned integrity, and writes it with its licenses into
# crates/strata-http/assets/docs/, where the server embeds it (`include_bytes!`). Only needed to
# change the version: `cargo build` uses the committed copy and needs no Node.
#
#   scripts/vendor-docs-renderer.sh            # the pinned version
#   scripts/vendor-docs-renderer.sh 9.0.26     # another version: prints what to pin here
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE="@stoplight/elements"
PINNED_VERSION="9.0.25"
# npm's `dist.integrity` of the pinned version (`npm view @stoplight/elements@9.0.25 dist.integrity`).
PINNED_INTEGRITY="sha512-rDbNsgSCNo74lyV57cBzym+8F68/R2j7UPq4r3w5qK608vX8APNJhTq+2MkbTjsM3bUhFIoRdI225tlI85KpCA=="

version="${1:-$PINNED_VERSION}"
dest="crates/strata-http/assets/docs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command -v npm >/dev/null || { echo "npm is needed (Debian: apt-get install -y npm)" >&2; exit 1; }
# `npm pack` downloads the package's tarball only: no install scripts run.
tarball="$(cd "$work" && npm pack --silent "$PACKAGE@$version")"
integrity="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w0)"
if [ "$version" = "$PINNED_VERSION" ] && [ "$integrity" != "$PINNED_INTEGRITY" ]; then
    echo "$PACKAGE@$version does not match the pinned integrity:" >&2
    echo "  pinned  $PINNED_INTEGRITY" >&2
    echo "  fetched $integrity" >&2
    exit 1
fi
tar -xzf "$work/$tarball" -C "$work"
rm -rf "$dest"
mkdir -p "$dest"
cp "$work/package/web-components.min.js" "$dest/web-components.min.js"
cp "$work/package/web-components.min.js.LICENSE.txt" "$dest/web-components.min.js.LICENSE.txt"
cp "$work/package/styles.min.css" "$dest/styles.min.css"
cp "$work/package/LICENSE" "$dest/LICENSE"
printf '%s@%s\n' "$PACKAGE" "$version" >"$dest/VERSION"
echo "wrote $dest: $PACKAGE@$version ($(wc -c <"$dest/web-components.min.js") bytes of script, $(wc -c <"$dest/styles.min.css") of styles)"
if [ "$version" != "$PINNED_VERSION" ]; then
    echo "to pin it: PINNED_VERSION=\"$version\" and PINNED_INTEGRITY=\"$integrity\" in $0"
fi

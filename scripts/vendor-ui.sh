#!/usr/bin/env bash
# Vendors the dashboard's third-party files into src/enomalism/ui/static/vendor/ from the npm
# registry: each package pinned by version AND by the registry's sha512 integrity, unpacked
# with tar, only the files the dashboard loads kept. Needs curl, tar and sha512sum, no Node.js.
# The result is committed: `make run` and the tests never fetch anything. Run it again after
# changing a pin; it replaces the vendor folder. (docs/dashboard.md, "Third-party files")
set -euo pipefail
cd "$(dirname "$0")/.."
REGISTRY=${NPM_REGISTRY:-https://registry.npmjs.org}
OUT=src/enomalism/ui/static/vendor
# name version integrity(sha512, base64) files-to-keep (paths inside the package, globs ok)
PINS=(
  "@picocss/pico 2.1.1 kIDugA7Ps4U+2BHxiNHmvgPIQDWPDU4IeU6TNRdvXQM1uZX+FibqDQT2xUOnnO2yq/LUHcwnGlu1hvf4KfXnMg== css/pico.min.css LICENSE.md"
  "uplot 1.6.32 KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw== dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE"
  "@xterm/xterm 6.0.0 TQwDdQGtwwDt+2cgKDLn0IRaSxYu1tSUjgKarSDkUM0ZNiSRXFpjxEsvc/Zgc5kq5omJ+V0a8/kIM2WD3sMOYg== lib/xterm.js css/xterm.css LICENSE"
  "@xterm/addon-fit 0.11.0 jYcgT6xtVYhnhgxh3QgYDnnNMYTcf8ElbxxFzX0IZo+vabQqSPAjC3c1wJrKB5E19VwQei89QCiZZP86DCPF7g== lib/addon-fit.js LICENSE"
  "@novnc/novnc 1.7.0 ucEJOx4T2avIRCleodk7YobZj5O2Ga2AeLfQ69A/yjG9HHba2+PDgwSkN3FttrmG+70ZGx21sElNFouK13RzyA== core vendor LICENSE.txt"
)
# Only for the browser tests (tests/ui/vendor/, never served): axe-core checks each page's
# accessibility (WCAG 2.1 AA) in the browser.
TEST_OUT=tests/ui/vendor
TEST_PINS=(
  "axe-core 4.14.1 FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ== axe.min.js LICENSE"
)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

vendor() {  # out-dir pin...
  local out=$1
  shift
  rm -rf "$out"
  mkdir -p "$out"
  for pin in "$@"; do
    fetch "$out" "$pin"
  done
}

fetch() {  # out-dir pin
  local OUT=$1 name version integrity keep base url got
  read -r name version integrity keep <<<"$2"
  base=${name##*/}
  url="$REGISTRY/$name/-/$base-$version.tgz"
  curl -fsSL "$url" -o "$tmp/$base.tgz"
  got=$(sha512sum "$tmp/$base.tgz" | cut -d' ' -f1 | xxd -r -p | base64 -w0)
  if [ "$got" != "$integrity" ]; then
    echo "vendor-ui: $name@$version: integrity mismatch (got sha512-$got)" >&2
    exit 1
  fi
  mkdir -p "$tmp/$base" "$OUT/$base"
  tar -xzf "$tmp/$base.tgz" -C "$tmp/$base"
  for f in $keep; do
    mkdir -p "$OUT/$base/$(dirname "$f")"
    cp -r "$tmp/$base/package/$f" "$OUT/$base/$f"
  done
  echo "$name $version" >> "$OUT/VERSIONS"
  echo "vendor-ui: $name@$version"
}

vendor "$OUT" "${PINS[@]}"
vendor "$TEST_OUT" "${TEST_PINS[@]}"

#!/usr/bin/env bash
# Fetches Debian packages named in a list and unpacks them into a cache, without installing
# them: `apt-get download` + `dpkg -x`. The PDF corpus and the retrieval evaluation use it to get
# documents that nobody on this project wrote; the cache is never committed.
#
#   scripts/fetch-debian-docs.sh LIST [CACHE_DIR]
#
# LIST has one package name a line (`#` starts a comment). CACHE_DIR defaults to
# $MAILROOM_DOCS_CACHE, else ~/.cache/mailroom/debian-docs. Packages are unpacked under
# CACHE_DIR/root/<package>/ (one tree per package, so a document's path names its package);
# a package already unpacked is not fetched again. Prints CACHE_DIR/root on success.
set -euo pipefail

list=${1:?usage: fetch-debian-docs.sh LIST [CACHE_DIR]}
cache=${2:-${MAILROOM_DOCS_CACHE:-$HOME/.cache/mailroom/debian-docs}}
mkdir -p "$cache/debs" "$cache/root"
# Tests running in parallel may fetch at once: one at a time per cache.
exec 9>"$cache/.lock"
flock 9

mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$' | sort -u)
missing=()
for pkg in "${wanted[@]}"; do
  [ -e "$cache/root/$pkg/.unpacked" ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
  # A machine as it comes may have no package lists (or stale ones): refresh once when apt
  # cannot name a candidate for the first missing package.
  if ! apt-cache show "${missing[0]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
  fi
  # (As root, apt warns that the download is "unsandboxed"; that is expected here.)
  (cd "$cache/debs" && apt-get download -qq "${missing[@]}" >/dev/null 2> >(grep -v unsandboxed >&2))
  for pkg in "${missing[@]}"; do
    deb=$(ls -t "$cache/debs/${pkg}"_*.deb 2>/dev/null | head -n 1)
    if [ -z "$deb" ]; then
      echo "fetch-debian-docs: no .deb downloaded for $pkg" >&2
      exit 1
    fi
    rm -rf "$cache/root/$pkg"
    mkdir -p "$cache/root/$pkg"
    dpkg -x "$deb" "$cache/root/$pkg"
    touch "$cache/root/$pkg/.unpacked"
  done
fi
echo "$cache/root"

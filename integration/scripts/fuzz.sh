#!/usr/bin/env bash
# Runs every Go fuzz target of the repository for a bounded time each
# (FUZZTIME, default 10s), one target at a time: go test -fuzz takes one
# target per run. Stops at the first failure and prints the failing input
# (Go writes it under the package's testdata/fuzz/<Target>/, where plain
# `go test` replays it from then on).
set -euo pipefail

cd "$(dirname "$0")/../.."
fuzztime=${FUZZTIME:-10s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# -list prints a package's matching names, then "ok <package> <time>".
# The pattern is unanchored by go test, hence the line filter too.
if ! go test -list '^Fuzz' ./... >"$out" 2>&1; then
  cat "$out" >&2
  echo "fuzz: listing fuzz targets failed" >&2
  exit 1
fi
targets=()
names=()
while read -r first second _; do
  case "$first" in
  Fuzz*) names+=("$first") ;;
  ok)
    for n in "${names[@]}"; do targets+=("$second $n"); done
    names=()
    ;;
  esac
done <"$out"
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets found" >&2
  exit 1
fi

echo "fuzz: ${#targets[@]} targets, $fuzztime each"
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo "fuzz: $pkg $name"
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$out"; then
    dir=$(go list -f '{{.Dir}}' "$pkg")
    input=$(sed -n 's/.*Failing input written to \(.*\)$/\1/p' "$out" | tail -n 1)
    echo "fuzz: FAIL $pkg $name" >&2
    if [ -n "$input" ]; then
      echo "fuzz: failing input: $dir/$input" >&2
      echo "fuzz: replay: go test -run '^${name}\$/$(basename "$input")\$' $pkg" >&2
    fi
    exit 1
  fi
done
echo "fuzz: all ${#targets[@]} targets passed"

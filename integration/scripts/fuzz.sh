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

# deadline_race reports whether a failed fuzz run's output ($1) shows only
# the coordinator's deadline race: the sole failure reason is "context
# deadline exceeded" and no failing input was written.
deadline_race() {
  grep -q 'Failing input written to' "$1" && return 1
  grep -A1 -- '^--- FAIL: ' "$1" | sed -n 2p | grep -qx '    context deadline exceeded'
}

echo "fuzz: ${#targets[@]} targets, $fuzztime each"
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  echo "fuzz: $pkg $name"
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$out"; then
    if deadline_race "$out"; then
      # Go's fuzz coordinator (before Go 1.27) can report a bare "context
      # deadline exceeded" when a duration -fuzztime ends while a worker is
      # mid-call (golang/go#75804). No input failed; a real finding always
      # writes one. Replay the corpus to be sure, then go on.
      echo "fuzz: $name hit the -fuzztime deadline race (golang/go#75804), no failing input; replaying its corpus"
      if go test -count=1 -run "^${name}\$" "$pkg"; then
        continue
      fi
    fi
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

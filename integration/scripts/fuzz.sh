#!/usr/bin/env bash
# Runs every Go fuzz target of the repository for a bounded budget each,
# one target at a time: go test -fuzz takes one target per run. Stops at
# the first failure and prints the failing input (Go writes it under the
# package's testdata/fuzz/<Target>/, where plain `go test` replays it from
# then on).
#
# The budget is a count of executions (-fuzztime Nx), sized per target to
# a few seconds here (execs below), times FUZZSCALE (default 1). A count
# has no wall-clock deadline, so Go's coordinator race at the end of a
# duration -fuzztime (golang/go#75804, fixed in Go 1.27: a bare "context
# deadline exceeded" with no failing input) cannot happen in make test.
# FUZZTIME=10m runs every target for a duration instead, for a long hunt;
# a run that then ends in that race is told apart from a finding.
set -euo pipefail

cd "$(dirname "$0")/../.."
scale=${FUZZSCALE:-1}
case "$scale" in
'' | *[!0-9]* | 0)
  echo "fuzz: FUZZSCALE must be a whole number from 1, not '$scale'" >&2
  exit 2
  ;;
esac

# execs names each target's budget: about 3-5 s each on a 2-core machine.
# A target missing here gets 10000.
declare -A execs=(
  [FuzzParseNLRI]=150000
  [FuzzParsePMSI]=150000
  [FuzzParseExtCommunities]=150000
  [FuzzParseRD]=150000
  [FuzzParseRT]=150000
  [FuzzIngestNLRI]=30000
  [FuzzValidate]=15000
  [FuzzOpen]=1500
  [FuzzLoad]=1000
)
budget() {
  if [ -n "${FUZZTIME:-}" ]; then
    echo "$FUZZTIME"
  else
    echo "$((${execs[$1]:-10000} * scale))x"
  fi
}
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

# deadline_race reports whether a failed duration run's output ($1) shows
# only the coordinator's deadline race: the sole failure reason is "context
# deadline exceeded" and no failing input was written.
deadline_race() {
  grep -q 'Failing input written to' "$1" && return 1
  grep -A1 -- '^--- FAIL: ' "$1" | sed -n 2p | grep -qx '    context deadline exceeded'
}

echo "fuzz: ${#targets[@]} targets, ${FUZZTIME:-executions counted per target (FUZZSCALE $scale)}"
for t in "${targets[@]}"; do
  read -r pkg name <<<"$t"
  fuzztime=$(budget "$name")
  echo "fuzz: $pkg $name, -fuzztime $fuzztime"
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$out"; then
    if [ -n "${FUZZTIME:-}" ] && deadline_race "$out"; then
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

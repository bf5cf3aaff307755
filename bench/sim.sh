#!/usr/bin/env bash
# bench/sim.sh: loom sim's speed and memory on the real traces
# (docs/performance.md, "The simulator"): for each trace and policy, the
# simulation's own wall time, simulated jobs per second, and the peak
# resident memory of the whole process (GNU time); first, the machine's
# own baseline (below).
#
#   bench/sim.sh [LOOM] [TRACES_DIR]      (defaults: build/release/bin/loom, ../shared/traces)
#   bench/sim.sh --quick ...              the first 2,000 jobs of the small trace (a smoke run)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
quick=0
if [[ ${1:-} == --quick ]]; then
  quick=1
  shift
fi
loom=${1:-$root/build/release/bin/loom}
traces=${2:-$root/../shared/traces}/swf
if [[ ! -d $traces ]]; then
  echo "bench/sim.sh: no traces in $traces (they live beside the project); skipped"
  exit 77
fi
if [[ ! -x /usr/bin/time ]]; then
  echo "bench/sim.sh: needs GNU time (/usr/bin/time, Debian package time); skipped"
  exit 77
fi
runs=("KTH-SP2-1996-2.1-cln.swf.gz|--limit 2000")
if ((!quick)); then
  runs=("KTH-SP2-1996-2.1-cln.swf.gz|" "HPC2N-2002-2.2-cln.swf.gz|" "SDSC-BLUE-2000-4.2-cln.swf.gz|" "CEA-Curie-2011-2.1-cln.swf.gz|--cores-per-node 16")
fi
# The machine's own baseline, in the same run: how fast one core gunzips
# the run's largest trace (gzip -dc, the best of three), a figure any
# machine gives without loom, to set the rates below against.
largest=${runs[-1]%%|*}
best=""
for _ in 1 2 3; do
  t0=$EPOCHREALTIME
  bytes=$(gzip -dc "$traces/$largest" | wc -c)
  t1=$EPOCHREALTIME
  best=$(awk -v b="$bytes" -v t0="$t0" -v t1="$t1" -v best="$best" \
    'BEGIN { r = b / (t1 - t0) / 1e6; print (best == "" || r > best) ? r : best }')
done
printf 'baseline: gzip -dc %s at %.0f MB/s (one core, best of 3)\n\n' "$largest" "$best"
printf '%-34s %-6s %8s %10s %12s %10s\n' trace policy jobs "wall (s)" "jobs/s" "peak MB"
for run in "${runs[@]}"; do
  trace=${run%%|*}
  read -r -a extra <<<"${run#*|}"
  for policy in fcfs easy; do
    /usr/bin/time -f 'peak_kb %M' -o /tmp/loom-sim-bench.time "$loom" sim "$traces/$trace" \
      --policy "$policy" "${extra[@]}" --report /tmp/loom-sim-bench.json >/dev/null
    peak=$(awk '/peak_kb/ { print $2 }' /tmp/loom-sim-bench.time)
    # The report's keys, one per line: "key": value,
    val() { awk -v k="\"$1\":" '$1 == k { gsub(",", "", $2); print $2 }' /tmp/loom-sim-bench.json; }
    printf '%-34s %-6s %8s %10.2f %12.0f %10.0f\n' "$trace" "$policy" "$(val jobs)" "$(val wall_seconds)" \
      "$(val jobs_per_second)" "$((peak / 1024))"
  done
done
rm -f /tmp/loom-sim-bench.json /tmp/loom-sim-bench.time

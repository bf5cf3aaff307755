#!/usr/bin/env bash
# bench/pmi.sh: the time MPI wire-up adds to a job (docs/performance.md,
# "MPI wire-up"; docs/pmi.md). For each shape (brokers × tasks), the median
# over RUNS of:
#   plain   `loom run -N B -n N ./plain`: a C program linked with MPICH that
#           does not start MPI (MPI_Initialized only), so the same
#           libraries are loaded;
#   mpi     `loom run -N B -n N ./mpi`: MPI_Init then MPI_Finalize;
#   wire-up mpi minus plain;
#   init    the slowest rank's MPI_Init, timed inside the program.
# And the machine's own baseline, the same two programs under MPICH's own
# launcher (`mpiexec`, hydra) on this one host.
#
#   bench/pmi.sh [--quick] [BIN_DIR] [RUNS]    (defaults: build/release/bin, 20 runs)
#   --quick: 2 runs of 4 tasks on 2 brokers (a smoke run)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ ${1:-} == --inner ]]; then
  # Inside `loom start`: time RUNS runs of each program; print the medians.
  shift
  brokers=$1 tasks=$2 runs=$3 dir=$4
  median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
  ms() { local t0=$EPOCHREALTIME; "$@" >"$dir/out" || { echo "bench/pmi.sh: $* failed" >&2; cat "$dir/out" >&2; exit 1; }; local t1=$EPOCHREALTIME; echo "$t0 $t1" | awk '{ printf "%.1f\n", ($2 - $1) * 1000 }'; }
  : >"$dir/plain.t"; : >"$dir/mpi.t"; : >"$dir/init.t"
  for ((i = 0; i < runs; ++i)); do
    ms loom run -N "$brokers" -n "$tasks" "$dir/plain" >>"$dir/plain.t"
    ms loom run -N "$brokers" -n "$tasks" "$dir/mpi" >>"$dir/mpi.t"
    awk '/^init_ms/ { print $2 }' "$dir/out" >>"$dir/init.t"
  done
  echo "$(median <"$dir/plain.t") $(median <"$dir/mpi.t") $(median <"$dir/init.t")"
  exit 0
fi
quick=0
if [[ ${1:-} == --quick ]]; then
  quick=1
  shift
fi
bin=${1:-$root/build/release/bin}
runs=${2:-20}
mpicc=$(command -v mpicc || true)
if [[ -z $mpicc ]]; then
  echo "bench/pmi.sh: needs mpicc (Debian: mpich and libmpich-dev, which scripts/deps installs); skipped"
  exit 77
fi
dir=$(mktemp -d /tmp/loom-pmi-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/mpi.c" <<'C'
#include <mpi.h>
#include <stdio.h>
#include <time.h>
int main(int argc, char** argv) {
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  MPI_Init(&argc, &argv);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6, worst = 0;
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Reduce(&ms, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  if (rank == 0) printf("init_ms %.1f\n", worst);
  MPI_Finalize();
  return 0;
}
C
cat >"$dir/plain.c" <<'C'
#include <mpi.h>
int main(void) {
  int flag = 0;
  MPI_Initialized(&flag);
  return flag;
}
C
"$mpicc" -O2 -o "$dir/mpi" "$dir/mpi.c"
"$mpicc" -O2 -o "$dir/plain" "$dir/plain.c"
export PATH=$bin:$PATH
shapes=("1 4" "2 4" "1 64" "4 64")
((quick)) && shapes=("2 4") && runs=2
printf '%-22s %10s %10s %10s %10s\n' "shape" "plain ms" "mpi ms" "wire-up" "MPI_Init"
for shape in "${shapes[@]}"; do
  read -r brokers tasks <<<"$shape"
  cores=$(((tasks + brokers - 1) / brokers))
  read -r plain mpi init < <(loom start --test-size="$brokers" --cores-per-rank="$cores" -- \
    "${BASH_SOURCE[0]}" --inner "$brokers" "$tasks" "$runs" "$dir")
  printf '%-22s %10s %10s %10.1f %10s\n' "loom, $brokers brokers, $tasks tasks" "$plain" "$mpi" \
    "$(echo "$mpi $plain" | awk '{ print $1 - $2 }')" "$init"
done
# The baseline: MPICH's own launcher on this host.
declare -A seen=()
for shape in "${shapes[@]}"; do
  read -r brokers tasks <<<"$shape"
  [[ -z ${seen[$tasks]:-} ]] || continue
  seen[$tasks]=1
  : >"$dir/plain.t"; : >"$dir/mpi.t"; : >"$dir/init.t"
  for ((i = 0; i < runs; ++i)); do
    t0=$EPOCHREALTIME; mpiexec -n "$tasks" "$dir/plain"; t1=$EPOCHREALTIME
    echo "$t0 $t1" | awk '{ printf "%.1f\n", ($2 - $1) * 1000 }' >>"$dir/plain.t"
    t0=$EPOCHREALTIME; mpiexec -n "$tasks" "$dir/mpi" >"$dir/out"; t1=$EPOCHREALTIME
    echo "$t0 $t1" | awk '{ printf "%.1f\n", ($2 - $1) * 1000 }' >>"$dir/mpi.t"
    awk '/^init_ms/ { print $2 }' "$dir/out" >>"$dir/init.t"
  done
  median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
  plain=$(median <"$dir/plain.t") mpi=$(median <"$dir/mpi.t") init=$(median <"$dir/init.t")
  printf '%-22s %10s %10s %10.1f %10s\n' "mpiexec, $tasks tasks" "$plain" "$mpi" \
    "$(echo "$mpi $plain" | awk '{ print $1 - $2 }')" "$init"
done

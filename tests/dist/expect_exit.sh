#!/usr/bin/env bash
# Runs a job that must fail in a given way and checks how: its exit code, the time it took, how
# often given lines appear in its output, and that none of its ranks (they write their pids into
# LOOM_TEST_PID_DIR) lives on.
# usage: expect_exit.sh <exit code | nonzero> <max seconds> [--line <regex> <times | any>]... -- <command...>
set -u
want_rc=$1 max_s=$2
shift 2
regexes=() times=()
while [ "$1" = --line ]; do
  regexes+=("$2") times+=("$3")
  shift 3
done
[ "$1" = -- ] || { echo "usage: expect_exit.sh <rc|nonzero> <max_s> [--line regex times]... -- command"; exit 2; }
shift
export LOOM_TEST_PID_DIR
LOOM_TEST_PID_DIR=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$LOOM_TEST_PID_DIR" "$log"' EXIT

start_ms=$(( $(date +%s%N) / 1000000 ))
"$@" >"$log" 2>&1
rc=$?
elapsed_ms=$(( $(date +%s%N) / 1000000 - start_ms ))
cat "$log"
echo "--- exit code $rc after $elapsed_ms ms"

fail() { echo "FAIL: $*"; exit 1; }
if [ "$want_rc" = nonzero ]; then
  [ "$rc" -ne 0 ] || fail "the job exited 0"
else
  [ "$rc" -eq "$want_rc" ] || fail "exit code $rc, expected $want_rc"
fi
(( elapsed_ms < max_s * 1000 )) || fail "took $elapsed_ms ms, more than $max_s s"
for i in "${!regexes[@]}"; do
  seen=$(grep -cE "${regexes[$i]}" "$log")
  if [ "${times[$i]}" = any ]; then
    [ "$seen" -ge 1 ] || fail "no line matches '${regexes[$i]}'"
  else
    [ "$seen" -eq "${times[$i]}" ] || fail "$seen lines match '${regexes[$i]}', expected ${times[$i]}"
  fi
done
n_pids=$(ls "$LOOM_TEST_PID_DIR" | wc -l)
[ "$n_pids" -ge 1 ] || fail "no rank recorded its pid"
# A rank that has exited but waits to be reaped by init (a zombie) counts as gone.
running() { [ -r "/proc/$1/stat" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }
for f in "$LOOM_TEST_PID_DIR"/*; do
  pid=$(cat "$f")
  for _ in 1 2 3 4 5 6 7 8 9 10; do running "$pid" || continue 2; sleep 0.2; done
  fail "rank $(basename "$f") (pid $pid) is still running"
done
echo "PASS: exit code $rc after $elapsed_ms ms, all $n_pids ranks gone"

#!/usr/bin/env bash
# Decisions per second through tollgate-redis's RedisStore against one local
# Redis, next to redis-benchmark running the very same Lua script (EVALSHA of
# crates/redis/src/decide.lua, a rolling 50/60s charge on random keys) in the
# same run: the ceiling on this machine. Release build. Writes nothing outside
# a temporary directory; starts (and stops) a redis-server of its own on $PORT.
#
#   bench/redis/run.sh                     # 200,000 decisions, 50 clients, 3 rounds
#   N=500000 ROUNDS=5 bench/redis/run.sh
#
# Each round runs, against an emptied server: redis-benchmark with 50 clients;
# redis-benchmark with 50 clients pipelining 16 deep; the store with 50 tasks
# sharing one store (one multiplexed connection, as a gateway shares it) on one
# runtime thread (redis-benchmark is one thread), then on two. Medians printed
# last, with the store's ratio to each ceiling.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-200000}
CLIENTS=${CLIENTS:-50}
KEYS=${KEYS:-100000}
PORT=${PORT:-6399}
ROUNDS=${ROUNDS:-3}
PIPELINE=${PIPELINE:-16}

for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install -y redis-server redis-tools" >&2; exit 1; }
done

cargo build --release --locked -q -p tollgate-redis --example redis_bench
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bench="$target_dir/release/examples/redis_bench"

if redis-cli -p "$PORT" ping >/dev/null 2>&1; then
  echo "port $PORT is taken; PORT=... picks another" >&2
  exit 1
fi
tmp=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize yes --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" --dir "$tmp"
cleanup() {
  if [ -f "$tmp/redis.pid" ]; then kill "$(cat "$tmp/redis.pid")" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
cli() { redis-cli -p "$PORT" "$@"; }

sha=$(cli -x SCRIPT LOAD < crates/redis/src/decide.lua)
# decide.lua's arguments for one rolling 50/60s charge, as RedisStore sends
# them: now ('' = Redis's TIME), grace (ms), '1' = charge; then the charge:
# algorithm, count, window (ns), window (µs), the log's step (µs), burst.
evalsha=(EVALSHA "$sha" 1 "tollgate:{bench-__rand_int__}:0" "" 1000 1 r 50 60000000000 60000000 1000 0)

# requests per second from redis-benchmark's CSV line
rb() { redis-benchmark -p "$PORT" -n "$N" -c "$CLIENTS" -r "$KEYS" --csv "$@" "${evalsha[@]}" | tail -1 | cut -d'"' -f4; }
store() { "$bench" "redis://127.0.0.1:$PORT" "$N" "$CLIENTS" "$KEYS" 1 "$1" | tee "$tmp/store.out" >&2; sed -n 's/.*: \([0-9]*\) decisions\/s.*/\1/p' "$tmp/store.out"; }
median() { tr ' ' '\n' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(redis-server --version | cut -d' ' -f1-3)"
echo "== $N decisions per run, $CLIENTS clients, $KEYS keys, $ROUNDS rounds; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
plain=() piped=() one=() two=() r_plain=() r_piped=()
for round in $(seq "$ROUNDS"); do
  cli FLUSHALL >/dev/null
  plain+=("$(rb)")
  cli FLUSHALL >/dev/null
  piped+=("$(rb -P "$PIPELINE")")
  # The store must write what the script writes for redis-benchmark: the same
  # signature, so both ran the same decision.
  sig_rb=$(cli --raw GET "$(cli RANDOMKEY)" | head -c 13)
  cli FLUSHALL >/dev/null
  one+=("$(store 1)")
  sig_store=$(cli --raw GET "$(cli RANDOMKEY)" | head -c 13)
  [ -n "$sig_rb" ] && [ "$sig_rb" = "$sig_store" ] || { echo "redis-benchmark wrote '$sig_rb', the store '$sig_store'" >&2; exit 1; }
  cli FLUSHALL >/dev/null
  two+=("$(store 2)")
  r_plain+=("$(ratio "${one[-1]}" "${plain[-1]}")")
  r_piped+=("$(ratio "${one[-1]}" "${piped[-1]}")")
  echo "round $round: redis-benchmark ${plain[-1]}/s, pipelined ${piped[-1]}/s; store ${one[-1]}/s (1 thread), ${two[-1]}/s (2 threads); store (1 thread) / redis-benchmark ${r_plain[-1]}, / pipelined ${r_piped[-1]}"
done

p=$(echo "${plain[@]}" | median)
q=$(echo "${piped[@]}" | median)
s1=$(echo "${one[@]}" | median)
s2=$(echo "${two[@]}" | median)
echo "== medians of $ROUNDS rounds (requests or decisions per second)"
echo "redis-benchmark EVALSHA, $CLIENTS clients:                 $p"
echo "redis-benchmark EVALSHA, $CLIENTS clients, -P $PIPELINE:          $q"
echo "RedisStore, $CLIENTS tasks, 1 connection, 1 thread:       $s1  ($(ratio "$s1" "$p") x redis-benchmark, $(ratio "$s1" "$q") x pipelined)"
echo "RedisStore, $CLIENTS tasks, 1 connection, 2 threads:      $s2  ($(ratio "$s2" "$p") x redis-benchmark, $(ratio "$s2" "$q") x pipelined)"
echo "median of the rounds' ratios, store (1 thread) / redis-benchmark: $(echo "${r_plain[@]}" | median), / pipelined: $(echo "${r_piped[@]}" | median)"
grep 'bytes per key' "$tmp/store.out"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

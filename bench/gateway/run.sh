#!/usr/bin/env bash
# Load benchmark: the upstream alone, nginx (limit_req keyed on X-Api-Key) and
# tollgate (rolling per-key limits over 100k keys), in one run, against the same
# upstream on the same machine, on the admitted path and on the 429 path.
#
#   bench/gateway/run.sh
#
# Prints requests/s, p99 latency and the share of non-2xx/3xx answers for each,
# and the ratios tollgate/nginx; over six rounds or more, each median ratio with
# its 95% confidence interval. Only ratios measured side by side in one run
# mean anything on a shared machine: absolute figures move with whatever else
# the cores are doing.
#
# Admitted path: 50 per rolling 60 s per key (nginx: 50r/m, burst=50 nodelay),
# a random key out of 100k per request, so every request is admitted.
# 429 path: 1 per 60 s per key; spend_keys.py first sends one request with
# every key, so the measured run gets only 429s (tollgate's escalation to 403
# is set out of reach: nginx has none). Every server starts afresh for each
# measurement. The table also shows the server's CPU time per request and how
# much CPU the rest of the machine used meanwhile ("other load"); a second one
# how long wrk and the server were ready to run but waited for a core, per
# request (wrk's latency clock runs while it waits).
#
# Knobs (environment):
#   KEYS=100000        API keys (tollgate's database and nginx's zones)
#   DURATION=10s       each measured wrk run
#   WARMUP=3s          an unmeasured run before each measured one
#   THREADS=2 CONNECTIONS=64   wrk -t / -c
#   OK_RATE=50/60s     the admitted path's per-key limit (nginx: 50r/m, burst 50)
#   PROFILE=production the cargo profile built and measured (production:
#                      release with LTO, what the gateway is deployed with)
#   SKIP_BUILD=1       use the binaries already in target/$PROFILE
#   PGO=1              measure the profile-guided build (scripts/build-pgo), as
#                      deployed for the most requests per core
#   TOLLGATE_BIN=PATH  measure this tollgate binary instead
#   TOLLGATE_BINS="base=PATH new=PATH"   measure several binaries side by side
#                      in each round (an A/B of a change; rows tollgate:NAME);
#                      the same binary under two names shows how far one
#                      round's ratio moves with nothing changed
#   KEEP=1             keep the work folder (configs, logs, key database)
#   ONLY="upstream nginx-ok tollgate-ok nginx-429 tollgate-429"   a subset
#   ROUNDS=1           repeat everything; nginx and tollgate take turns going first
#   SCHED=1            also record 2 s of every switch on the cores during each
#                      measured run (perf sched) and show who took turns how
#                      long, and how often each was preempted: the server's
#                      threads and wrk's (needs DURATION=6s or longer; tracing
#                      costs some req/s, so compare such runs only with each other)
#   SYSCALLS=1         also count the server's system calls per request (perf
#                      stat on syscall tracepoints; it costs some req/s, so
#                      compare such runs only with each other)
#
# Needs root for apt-get when wrk or nginx is missing. Everything it starts is
# stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=config.sh
source "$here/config.sh"

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
ONLY=${ONLY:-upstream nginx-ok tollgate-ok nginx-429 tollgate-429}
ROUNDS=${ROUNDS:-1}

# --- tools ------------------------------------------------------------------

need_tools wrk nginx
if [[ -n ${SYSCALLS:-}${SCHED:-} ]]; then
    command -v perf >/dev/null || die "SYSCALLS=1 and SCHED=1 need perf (Debian: apt-get install linux-perf)"
fi
# SCHED=1 records from the run's 4th second to its 6th: a shorter run would end
# first, and the recording would count the machine at rest.
if [[ -n ${SCHED:-} && $DURATION =~ ^([0-9]+)s?$ ]] && ((BASH_REMATCH[1] < 6)); then
    die "SCHED=1 records the 4th to the 6th second of each run: set DURATION=6s or longer (it is $DURATION)"
fi
command -v python3 >/dev/null || die "python3 is needed to write the key database"
python3 -c 'import sqlite3' || die "python3 has no sqlite3 module"

# The configs below are written for nginx's reading of `limit_req`: rates under
# 1r/s are written per minute.
ok_count=$(nginx_ok_count)

build_binaries
TOLLGATE=${TOLLGATE_BIN:-$tollgate_bin}
UPSTREAM=$target/examples/bench_upstream
# The tollgate binaries measured: "tollgate" alone, or named variants.
variants=() variant_bins=()
if [[ -n ${TOLLGATE_BINS:-} ]]; then
    for pair in $TOLLGATE_BINS; do
        variants+=("tollgate:${pair%%=*}") variant_bins+=("${pair#*=}")
    done
else
    variants=(tollgate) variant_bins=("$TOLLGATE")
fi
for bin in "${variant_bins[@]}"; do
    [[ -x $bin ]] || die "$bin is missing: build without SKIP_BUILD"
done
[[ -x $UPSTREAM ]] || die "$UPSTREAM is missing: build without SKIP_BUILD"

# --- processes --------------------------------------------------------------

work=$(mktemp -d /tmp/tollgate-bench.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n ${KEEP:-} ]]; then
        log "work folder kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop() { # pid
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local keep=()
    for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
}

# A server's processes: the one started and its children still running
# (nginx's workers).
family() { # pid
    echo "$1" $(pgrep -P "$1" || true)
}

# CPU time (ms) used so far by a process and its children still running:
# "user system".
cpu_split_ms() {
    local user=0 system=0 pid f
    for pid in $(family "$1"); do
        # Fields 14 and 15 (utime, stime) after the parenthesised name.
        f=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || continue
        set -- $f
        user=$((user + ${12})) system=$((system + ${13}))
    done
    local hz
    hz=$(getconf CLK_TCK)
    echo "$((user * 1000 / hz)) $((system * 1000 / hz))"
}

# The same, in all.
cpu_ms() {
    local user system
    read -r user system < <(cpu_split_ms "$1")
    echo $((user + system))
}

# --- the upstream -------------------------------------------------------------

upstream_port=$(free_port)
"$UPSTREAM" "127.0.0.1:$upstream_port" "$(nproc)" 2>"$work/upstream.log" &
upstream_pid=$!
pids+=("$upstream_pid")
wait_port "$upstream_port" "$upstream_pid" "the upstream"

# --- tollgate's configs and key database -----------------------------------------

tollgate_port=$(free_port)
tollgate_config "$work/tollgate-ok.toml" "$tollgate_port" "$upstream_port" "$OK_RATE"
tollgate_config "$work/tollgate-429.toml" "$tollgate_port" "$upstream_port" "1/60s"

start_tollgate() { # config, [binary] → sets tollgate_pid
    RUST_LOG=warn "${2:-$TOLLGATE}" serve --config "$1" 2>>"$work/tollgate.log" &
    tollgate_pid=$!
    pids+=("$tollgate_pid")
    wait_port "$tollgate_port" "$tollgate_pid" "tollgate"
}

log "writing $KEYS keys"
# tollgate creates the database and applies its migrations; then the keys go
# in all at once, and every later start loads them into its snapshot.
start_tollgate "$work/tollgate-ok.toml" "${variant_bins[0]}"
stop "$tollgate_pid"
python3 "$here/make_keys.py" "$work/keys.db" "$work/keys.txt" "$KEYS" >&2

# --- nginx ------------------------------------------------------------------

nginx_ok_port=$(free_port)
nginx_429_port=$(free_port)
mkdir -p "$work/nginx"
# Admitted path: $ok_count at once (burst, no delay), then one every
# 60/$ok_count s: close to tollgate's $OK_RATE rolling window. 429 path: one
# request per minute per key.
nginx_config "$work/nginx/nginx.conf" "$work/nginx" "$upstream_port" workers \
    "$nginx_ok_port $ok_count $ok_count" "$nginx_429_port 1 0"
"$NGINX" -t -q -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf"

start_nginx() { # → sets nginx_pid
    "$NGINX" -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" &
    nginx_pid=$!
    pids+=("$nginx_pid")
    wait_port "$nginx_ok_port" "$nginx_pid" "nginx"
    wait_port "$nginx_429_port" "$nginx_pid" "nginx"
}

# --- measuring --------------------------------------------------------------

declare -A rps p99 p50 bad cpu user system other syscalls writes wrk_wait server_wait server_runs server_sleeps sched
keyfile="$work/keys.txt"
ncpu=$(nproc)
hz=$(getconf CLK_TCK)

status_of() { # url → HTTP status of one request with the first key
    curl -s -o /dev/null -w '%{http_code}' -H "X-Api-Key: $(head -n1 "$keyfile")" "$1"
}

# Busy CPU time (ms) of the whole machine, all cores.
busy_ms() {
    awk -v hz="$hz" '/^cpu / { print int(($2 + $3 + $4 + $7 + $8 + $9) * 1000 / hz) }' /proc/stat
}

# How long the threads of these processes have waited for a core while ready to
# run, how many times they were put on one, and how many times they gave the
# core up because they had nothing to do: "wait_ns runs sleeps", summed from
# /proc/PID/task/*/schedstat (run time, run delay, time slices) and
# voluntary_ctxt_switches in /proc/PID/task/*/status.
sched_of() { # pid...
    local pid t d n k v wait=0 runs=0 sleeps=0
    for pid in "$@"; do
        for t in /proc/"$pid"/task/*; do
            read -r _ d n 2>/dev/null <"$t/schedstat" || continue
            wait=$((wait + d)) runs=$((runs + n))
            while read -r k v; do
                [[ $k == voluntary_ctxt_switches: ]] && sleeps=$((sleeps + v))
            done 2>/dev/null <"$t/status" || true
        done
    done
    echo "$wait $runs $sleeps"
}

# From a `perf sched record`: the turns on a core of the server's threads (those
# of PIDS) and of wrk's, how long they lasted on average, how many of the
# server's began after waiting more than 1 ms for the core, how many of wrk's
# lasted more than 1 ms, and how many turns of each ended with the thread
# still ready to run (preempted, state R) rather than asleep: "server_turns
# server_avg_ms server_waits_1ms wrk_turns wrk_avg_ms wrk_long_turns
# server_preempted wrk_preempted".
sched_turns() { # data file, name, pid...
    local data=$1 name=$2
    shift 2
    sched[$name]=$(perf sched timehist --state -i "$data" 2>/dev/null | awk -v pids=" $* " '
        $3 ~ /\[[0-9]+(\/[0-9]+)?\]$/ {
            id = $3; sub(/.*\[/, "", id); sub(/\]$/, "", id)
            n = split(id, p, "/"); pid = p[n]
            delay = $5; turn = $6; preempted = ($7 == "R")
            if (index(pids, " " pid " ")) { st++; sr += turn; if (delay > 1) sw++; sp += preempted }
            else if ($3 ~ /^wrk\[/) { wt++; wr += turn; if (turn > 1) wl++; wp += preempted }
        }
        END { printf "%d %.3f %d %d %.3f %d %d %d", st, st ? sr / st : 0, sw, wt, wt ? wr / wt : 0, wl, sp, wp }')
}

# CPU time (ms) of this shell's finished children (wrk, once waited for), from
# the output of `times` (which must run in this shell, not in a $(…) subshell).
children_ms() { # file with the output of `times`
    awk 'NR == 2 {
        split($1, u, /[ms]/); split($2, s, /[ms]/)
        print int((u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000)
    }' "$1"
}

run_wrk() { # name, url, pid whose CPU is counted
    local name=$1 url=$2 pid=$3 out line
    out="$work/wrk-$name.txt"
    local cpu0 up0 busy0 kids0 t0 cpu1 up1 busy1 kids1 t1
    local user0 sys0 user1 sys1
    read -r user0 sys0 < <(cpu_split_ms "$pid")
    cpu0=$((user0 + sys0)); up0=$(cpu_ms "$upstream_pid"); busy0=$(busy_ms); times >"$work/times0"; t0=$(date +%s%N)
    local load=(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$here/keys.lua" "$url" -- "$keyfile")
    # The server's processes (nginx's workers are its children).
    local server_pids wait0 runs0 sleeps0 wait1 runs1 sleeps1 wrk_pid wrk_sched="0 0 0"
    server_pids=$(family "$pid")
    read -r wait0 runs0 sleeps0 < <(sched_of $server_pids)
    if [[ -n ${SYSCALLS:-} ]]; then
        # perf follows every thread of each of the server's processes.
        perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_write -p "${server_pids// /,}" \
            -o "$work/perf-$name.txt" -- "${load[@]}" >"$out" &
    else
        "${load[@]}" >"$out" &
    fi
    local load_pid=$!
    wrk_pid=$load_pid
    # wrk's own wait for a core: its threads' counters are gone once it has
    # exited, so they are read every 0.1 s and the highest reading counts (it
    # misses at most the last 0.1 s of a run; a reading taken while wrk's
    # threads exit is lower, and does not count).
    if [[ -n ${SYSCALLS:-} ]]; then # wrk runs under perf
        local i child=
        for ((i = 0; i < 40; i++)); do
            child=$(pgrep -n -x wrk -P "$wrk_pid") && break
            sleep 0.05
        done
        wrk_pid=${child:-$wrk_pid}
    fi
    local sched_pid=
    if [[ -n ${SCHED:-} ]]; then
        # Every switch on both cores for 2 s, from the run's 4th second on.
        (sleep 3 && perf sched record -q -o "$work/sched-$name.data" -- sleep 2 >/dev/null 2>&1) &
        sched_pid=$!
    fi
    local reading
    while kill -0 "$wrk_pid" 2>/dev/null; do
        reading=$(sched_of "$wrk_pid")
        ((${reading%% *} < ${wrk_sched%% *})) || wrk_sched=$reading
        sleep 0.1
    done
    wait "$load_pid" || die "wrk failed (see $out)"
    t1=$(date +%s%N); times >"$work/times1"; busy1=$(busy_ms); up1=$(cpu_ms "$upstream_pid")
    read -r user1 sys1 < <(cpu_split_ms "$pid")
    cpu1=$((user1 + sys1))
    read -r wait1 runs1 sleeps1 < <(sched_of $server_pids)
    # Read once the run's own figures are taken: the analysis costs CPU too.
    if [[ -n $sched_pid ]]; then
        wait "$sched_pid" || die "perf sched record failed (is perf allowed to trace?)"
        sched_turns "$work/sched-$name.data" "$name" $server_pids
    fi
    kids0=$(children_ms "$work/times0"); kids1=$(children_ms "$work/times1")
    line=$(grep '^BENCH ' "$out") || die "no result line in $out"
    local requests duration non2xx socket p50_us p99_us server ours wait
    requests=$(sed -E 's/.* requests=([0-9]+).*/\1/' <<<"$line")
    duration=$(sed -E 's/.* duration_us=([0-9]+).*/\1/' <<<"$line")
    non2xx=$(sed -E 's/.* non2xx=([0-9]+).*/\1/' <<<"$line")
    socket=$(sed -E 's/.* socket_errors=([0-9]+).*/\1/' <<<"$line")
    p50_us=$(sed -E 's/.* p50_us=([0-9]+).*/\1/' <<<"$line")
    p99_us=$(sed -E 's/.* p99_us=([0-9]+).*/\1/' <<<"$line")
    server=$((cpu1 - cpu0))
    [[ $pid == "$upstream_pid" ]] && up1=$up0 # counted once
    ours=$((server + up1 - up0 + kids1 - kids0))
    rps[$name]=$(awk -v r="$requests" -v d="$duration" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
    p50[$name]=$(awk -v u="$p50_us" 'BEGIN { printf "%.2f", u / 1000 }')
    p99[$name]=$(awk -v u="$p99_us" 'BEGIN { printf "%.2f", u / 1000 }')
    bad[$name]=$(awk -v b="$non2xx" -v r="$requests" 'BEGIN { printf "%.1f", r ? 100 * b / r : 0 }')
    cpu[$name]=$(awk -v c="$server" -v r="$requests" 'BEGIN { printf "%.1f", r ? 1000 * c / r : 0 }')
    user[$name]=$(awk -v c="$((user1 - user0))" -v r="$requests" 'BEGIN { printf "%.1f", r ? 1000 * c / r : 0 }')
    system[$name]=$(awk -v c="$((sys1 - sys0))" -v r="$requests" 'BEGIN { printf "%.1f", r ? 1000 * c / r : 0 }')
    # Waiting for a core while ready to run (µs per request) and being put on
    # one (per 100 requests): for wrk, whose clock runs while it waits, and for
    # the server.
    read -r wait _ _ <<<"$wrk_sched"
    wrk_wait[$name]=$(awk -v w="$wait" -v r="$requests" 'BEGIN { printf "%.2f", r ? w / 1000 / r : 0 }')
    server_wait[$name]=$(awk -v w="$((wait1 - wait0))" -v r="$requests" 'BEGIN { printf "%.2f", r ? w / 1000 / r : 0 }')
    server_runs[$name]=$(awk -v n="$((runs1 - runs0))" -v r="$requests" 'BEGIN { printf "%.1f", r ? 100 * n / r : 0 }')
    server_sleeps[$name]=$(awk -v n="$((sleeps1 - sleeps0))" -v r="$requests" 'BEGIN { printf "%.1f", r ? 100 * n / r : 0 }')
    # What the rest of the machine used meanwhile (other people's builds…), in
    # percent of all cores: anything above a few percent skews the figures.
    other[$name]=$(awk -v b="$((busy1 - busy0))" -v o="$ours" -v t="$(((t1 - t0) / 1000000))" -v n="$ncpu" \
        'BEGIN { x = 100 * (b - o) / (t * n); printf "%.0f", x < 0 ? 0 : x }')
    if [[ -n ${SYSCALLS:-} ]]; then
        syscalls[$name]=$(awk -F, -v r="$requests" '$3 == "raw_syscalls:sys_enter" { printf "%.2f", $1 / r }' "$work/perf-$name.txt")
        writes[$name]=$(awk -F, -v r="$requests" '$3 == "syscalls:sys_enter_write" { printf "%.3f", $1 / r }' "$work/perf-$name.txt")
    fi
    ((socket == 0)) || log "$name: $socket socket errors (see $out)"
    log "$name: ${rps[$name]} req/s, p99 ${p99[$name]} ms, non-2xx ${bad[$name]}%, other load ${other[$name]}%"
}

warm() { # url, duration
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2" -s "$here/keys.lua" "$1" -- "$keyfile" >/dev/null
}

# The 429 path's warm-up: one request with every key, so each has spent its
# one request per minute and the measured run (well within that minute) gets
# 429s only.
spend() { # port
    local counts
    counts=$(python3 "$here/spend_keys.py" 127.0.0.1 "$1" "$PATH_UNDER_TEST" "$keyfile" 8)
    log "   every key spent: $counts"
}

wants() { [[ " $ONLY " == *" $1 "* ]]; }

bench_upstream() { # round
    wants upstream || return 0
    log "round $1: upstream alone"
    local url="http://127.0.0.1:$upstream_port$PATH_UNDER_TEST"
    warm "$url" "$WARMUP"
    run_wrk "upstream.$1" "$url" "$upstream_pid"
}

bench_nginx() { # round, path (ok|429)
    wants "nginx-$2" || return 0
    start_nginx
    local url
    if [[ $2 == ok ]]; then
        log "round $1: nginx, admitted path"
        url="http://127.0.0.1:$nginx_ok_port$PATH_UNDER_TEST"
        [[ $(status_of "$url") == 200 ]] || die "nginx's admitted path does not answer 200"
        warm "$url" "$WARMUP"
    else
        log "round $1: nginx, 429 path (spending every key's request first)"
        url="http://127.0.0.1:$nginx_429_port$PATH_UNDER_TEST"
        spend "$nginx_429_port"
        [[ $(status_of "$url") == 429 ]] || die "nginx's 429 path does not answer 429"
    fi
    run_wrk "nginx-$2.$1" "$url" "$nginx_pid"
    stop "$nginx_pid"
}

bench_tollgate() { # round, path (ok|429), variant index
    wants "tollgate-$2" || return 0
    local name=${variants[$3]}
    start_tollgate "$work/tollgate-$2.toml" "${variant_bins[$3]}"
    local url="http://127.0.0.1:$tollgate_port$PATH_UNDER_TEST"
    if [[ $2 == ok ]]; then
        log "round $1: $name, admitted path"
        [[ $(status_of "$url") == 200 ]] || die "$name's admitted path does not answer 200"
        warm "$url" "$WARMUP"
    else
        log "round $1: $name, 429 path (spending every key's request first)"
        spend "$tollgate_port"
        [[ $(status_of "$url") == 429 ]] || die "$name's 429 path does not answer 429"
    fi
    run_wrk "$name-$2.$1" "$url" "$tollgate_pid"
    stop "$tollgate_pid"
}

# Every server starts fresh for each measurement (empty windows); the order
# flips every round, so a neighbour's load that comes and goes does not always
# land on the same server.
for ((round = 1; round <= ROUNDS; round++)); do
    bench_upstream "$round"
    for path in ok 429; do
        if ((round % 2)); then
            bench_nginx "$round" "$path"
            for ((v = 0; v < ${#variants[@]}; v++)); do bench_tollgate "$round" "$path" "$v"; done
        else
            for ((v = ${#variants[@]} - 1; v >= 0; v--)); do bench_tollgate "$round" "$path" "$v"; done
            bench_nginx "$round" "$path"
        fi
    done
done

# --- report -------------------------------------------------------------------

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%s", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
names=(upstream)
for path in ok 429; do
    names+=("nginx-$path")
    for v in "${variants[@]}"; do names+=("$v-$path"); done
done

echo
echo "tollgate gateway benchmark — $(date)"
echo "machine: $ncpu cores, $cpu_model; nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') (worker_processes auto); $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2)"
echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency -s keys.lua, $KEYS keys, a random key per request;"
echo "      admitted path: $OK_RATE per key (nginx ${ok_count}r/m burst=$ok_count nodelay); 429 path: 1/60s per key, every key spent first"
echo
w=12
for name in "${names[@]}"; do ((${#name} > w)) && w=${#name}; done
printf "| %-5s | %-${w}s | %9s | %8s | %8s | %7s | %14s | %10s |\n" round target 'req/s' 'p50 ms' 'p99 ms' 'non-2xx' 'server CPU/req' 'other load'
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------- "$(printf -- '-%.0s' $(seq $((w + 2))))" ----------: ---------: ---------: --------: ---------------: -----------:
for ((round = 1; round <= ROUNDS; round++)); do
    for name in "${names[@]}"; do
        key="$name.$round"
        [[ -n ${rps[$key]:-} ]] || continue
        printf "| %-5s | %-${w}s | %9s | %8s | %8s | %6s%% | %11s µs | %9s%% |\n" "$round" "$name" "${rps[$key]}" "${p50[$key]}" "${p99[$key]}" "${bad[$key]}" "${cpu[$key]}" "${other[$key]}"
    done
done
echo
echo "Where the server's time goes, per request: user space and kernel (CPU time),"
echo "system calls (with SYSCALLS=1: perf stat on the server's processes; 'write' is"
echo "write(2) alone, not writev), time spent ready to run but waiting for a core (by"
echo "wrk, whose latency clock runs meanwhile, and by the server), how often the"
echo "server's threads were put on a core, and how often they left it with nothing to do:"
echo
printf "| %-5s | %-${w}s | %11s | %13s | %12s | %9s | %14s | %17s | %16s | %18s |\n" round target 'user µs/req' 'system µs/req' 'syscalls/req' 'write/req' 'wrk wait µs/req' 'server wait µs/req' 'server runs/100 req' 'server sleeps/100 req'
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------- "$(printf -- '-%.0s' $(seq $((w + 2))))" ------------: --------------: -------------: ----------: ----------------: -------------------: --------------------: ----------------------:
for ((round = 1; round <= ROUNDS; round++)); do
    for name in "${names[@]}"; do
        key="$name.$round"
        [[ -n ${rps[$key]:-} ]] || continue
        printf "| %-5s | %-${w}s | %11s | %13s | %12s | %9s | %15s | %18s | %19s | %21s |\n" "$round" "$name" "${user[$key]}" "${system[$key]}" "${syscalls[$key]:--}" "${writes[$key]:--}" "${wrk_wait[$key]}" "${server_wait[$key]}" "${server_runs[$key]}" "${server_sleeps[$key]}"
    done
done
echo
if [[ -n ${SCHED:-} ]]; then
    echo
    echo "Turns on a core over 2 s of each run (SCHED=1: perf sched timehist): the server's"
    echo "threads and wrk's, how long they lasted, how many of the server's came after a"
    echo "wait of more than 1 ms, how many of wrk's lasted more than 1 ms, and how many of"
    echo "each ended preempted (still ready to run) rather than asleep:"
    echo
    printf "| %-5s | %-${w}s | %12s | %17s | %19s | %16s | %9s | %14s | %15s | %13s |\n" round target 'server turns' 'server avg turn ms' 'server waits > 1 ms' 'server preempted' 'wrk turns' 'wrk avg turn ms' 'wrk turns > 1 ms' 'wrk preempted'
    printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------- "$(printf -- '-%.0s' $(seq $((w + 2))))" -------------: ------------------: --------------------: -----------------: ----------: ---------------: ----------------: --------------:
    for ((round = 1; round <= ROUNDS; round++)); do
        for name in "${names[@]}"; do
            key="$name.$round"
            [[ -n ${sched[$key]:-} ]] || continue
            read -r st sa sw wt wa wl sp wp <<<"${sched[$key]}"
            printf "| %-5s | %-${w}s | %12s | %18s | %19s | %16s | %9s | %15s | %16s | %13s |\n" "$round" "$name" "$st" "$sa" "$sw" "$sp" "$wt" "$wa" "$wl" "$wp"
        done
    done
fi
echo
ratio_line() { # label, tollgate rps, nginx rps, tollgate p99, nginx p99
    awk -v l="$1" -v t="$2" -v n="$3" -v tp="$4" -v np="$5" \
        'BEGIN { printf "%s req/s %.2f   p99 %s ms vs %s ms (%s)\n", l, t / n, tp, np, (tp + 0 <= np + 0 ? "no worse" : "worse") }'
}
med() { # array, name → median over the rounds
    local r
    for ((r = 1; r <= ROUNDS; r++)); do eval "echo \${$1[$2.$r]:-}"; done | grep . | median
}
for v in "${variants[@]}"; do
    for path in ok 429; do
        label=$([[ $path == ok ]] && echo "admitted" || echo "429     ")
        for ((round = 1; round <= ROUNDS; round++)); do
            t="$v-$path.$round" n="nginx-$path.$round"
            [[ -n ${rps[$t]:-} && -n ${rps[$n]:-} ]] || continue
            ratio_line "$v/nginx, $label path, round $round:" "${rps[$t]}" "${rps[$n]}" "${p99[$t]}" "${p99[$n]}"
        done
        if ((ROUNDS > 1)) && [[ -n ${rps[$v-$path.1]:-} && -n ${rps[nginx-$path.1]:-} ]]; then
            ratio_line "$v/nginx, $label path, medians:" "$(med rps "$v-$path")" "$(med rps "nginx-$path")" "$(med p99 "$v-$path")" "$(med p99 "nginx-$path")"
        fi
    done
done
# Over several rounds, one figure per comparison: the median of the per-round
# ratios, their range, and in how many rounds each held. With two builds or
# more, each is also compared with the first, round by round: measuring a
# binary against a copy of itself (TOLLGATE_BINS="a=PATH b=PATH") shows how
# far one round's ratio moves on this machine with nothing changed.
#
# With six rounds or more, each median comes with a 95% confidence interval
# that assumes nothing about how the rounds scatter (the sign test's: the
# k-th smallest and k-th largest ratio, k from the binomial distribution
# with p = 1/2): a claim such as "at least 1.00" holds at 95% when the
# interval's lower end does. Each p99 ratio (tollgate's over nginx's) gets
# its median and interval too.
spread_line() { # label; stdin: one "ratio p99-ratio" line per round
    awk -v l="$1" '
        function median(x, n) { return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
        function sort(x, n,    i, j, v) {
            for (i = 2; i <= n; i++) { v = x[i]; for (j = i - 1; j >= 1 && x[j] > v; j--) x[j + 1] = x[j]; x[j + 1] = v }
        }
        # The largest k with P(X <= k - 1) <= 0.025, X ~ Binomial(n, 1/2);
        # 0 when even the whole range covers the median with less than 95%.
        function rank(n,    k, p, c) {
            p = 0.5 ^ n; c = p
            for (k = 1; c <= 0.025; k++) { p = p * (n - k + 1) / k; c += p }
            return k - 1
        }
        function interval(x, n,    k) {
            k = rank(n)
            return k ? sprintf("95%% interval %.2f-%.2f", x[k], x[n - k + 1]) : "too few rounds for a 95% interval"
        }
        { r[NR] = $1; q[NR] = $2; up += ($1 >= 1); ok += ($2 <= 1) }
        END {
            if (NR < 2) exit
            sort(r, NR); sort(q, NR)
            printf "%s req/s median %.2f, range %.2f-%.2f, %s, at least 1.00 in %d of %d rounds; p99 ratio median %.2f, %s, no worse in %d of %d\n",
                l, median(r, NR), r[1], r[NR], interval(r, NR), up, NR, median(q, NR), interval(q, NR), ok, NR
        }'
}
per_round() { # name, anchor name, path → "ratio p99-ratio" per round
    local round t a
    for ((round = 1; round <= ROUNDS; round++)); do
        t="$1-$3.$round" a="$2-$3.$round"
        [[ -n ${rps[$t]:-} && -n ${rps[$a]:-} ]] || continue
        awk -v t="${rps[$t]}" -v a="${rps[$a]}" -v tp="${p99[$t]}" -v ap="${p99[$a]}" \
            'BEGIN { printf "%.6f %.6f\n", t / a, (ap > 0 ? tp / ap : (tp > 0 ? 99 : 1)) }'
    done
}
if ((ROUNDS > 1)); then
    echo
    for path in ok 429; do
        label=$([[ $path == ok ]] && echo "admitted" || echo "429     ")
        for v in "${variants[@]}"; do
            per_round "$v" nginx "$path" | spread_line "$v/nginx, $label path, over the rounds:"
        done
        for v in "${variants[@]:1}"; do
            per_round "$v" "${variants[0]}" "$path" | spread_line "$v/${variants[0]}, $label path, over the rounds:"
        done
    done
fi
if ((ROUNDS > 1)); then
    echo
    echo "Medians over the rounds, per target:"
    for name in "${names[@]}"; do
        [[ -n $(med rps "$name") ]] || continue
        printf '%s: %s req/s, p99 %s ms, CPU %s µs/req, wrk wait %s µs/req, server wait %s µs/req, server runs %s and sleeps %s/100 req\n' \
            "$name" "$(med rps "$name")" "$(med p99 "$name")" "$(med cpu "$name")" \
            "$(med wrk_wait "$name")" "$(med server_wait "$name")" "$(med server_runs "$name")" "$(med server_sleeps "$name")"
    done
fi
for ((round = 1; round <= ROUNDS; round++)); do
    [[ -n ${rps[upstream.$round]:-} ]] || continue
    for name in nginx-ok "${variants[@]/%/-ok}"; do
        [[ -n ${rps[$name.$round]:-} ]] || continue
        awk -v a="${rps[$name.$round]}" -v u="${rps[upstream.$round]}" -v n="$name" -v r="$round" 'BEGIN { printf "%s / upstream alone, round %s: %.2f\n", n, r, a / u }'
    done
done
echo
echo "server CPU/req: CPU time of the server under test (nginx's master and workers, or tollgate) per request, the upstream's not counted."
echo "other load: CPU the rest of the machine used during the run, in % of all cores; above a few % the absolute figures are skewed."
echo "Only ratios measured side by side in one run mean anything on a shared machine."

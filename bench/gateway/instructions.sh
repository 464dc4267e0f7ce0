#!/usr/bin/env bash
# Work per request, counted: tollgate's own instructions and simulated cache
# misses per request on the admitted path and on the 429 path, under
# valgrind's callgrind, over 100k keys as in run.sh; nginx's too, on the same
# requests, as run.sh configures it (one process here, which callgrind can
# follow).
#
#   bench/gateway/instructions.sh
#   SKIP_BUILD=1 TOLLGATE_BINS="base=/path/old new=/path/new" bench/gateway/instructions.sh
#
# Why: on a shared 2-core VM, req/s and CPU time per request move by ±15% from
# one run to the next, more than most single changes are worth. Instruction
# and cache-miss counts of one process's user space hardly move at all, so an
# A/B of a change reads clearly here. They leave out the kernel (about 60% of
# a request's CPU) and what a miss costs on real hardware, so they say which
# build does less work, not how much faster it serves: run.sh says that.
#
# Each measurement starts tollgate afresh under callgrind with instrumentation
# off, sends one request with every measured key (the 429 path: two, so each
# key has been refused once before), switches instrumentation on, sends one
# more request with every measured key, switches it off and reads the totals.
# Requests are pipelined over 8 keep-alive connections (spend_keys.py).
#
# Knobs (environment):
#   KEYS=100000        API keys in the database (the tables' size)
#   MEASURED=$KEYS     keys whose requests are counted (the first ones); fewer
#                      keys run faster but fit in the cache more than run.sh's do
#   LL=33554432,16,64  the simulated last-level cache: size, ways, line (this
#                      machine's 32 MiB L3; valgrind's own guess on AMD EPYC
#                      VMs was a 256 MiB direct-mapped one)
#   OK_RATE=50/60s     the admitted path's per-key limit
#   PROFILE=production the cargo profile built and measured (production:
#                      release with LTO, what the gateway is deployed with)
#   SKIP_BUILD=1       use the binaries already in target/$PROFILE
#   PGO=1              measure the profile-guided build (scripts/build-pgo)
#   TOLLGATE_BINS="name=PATH …"   the builds to compare (default: target/$PROFILE)
#   ANCHOR=nginx       also count nginx's work; ANCHOR=none leaves it out
#   KEEP=1             keep the work folder (configs, callgrind outputs)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=config.sh
source "$here/config.sh"

MEASURED=${MEASURED:-$KEYS}
LL=${LL:-33554432,16,64}

ANCHOR=${ANCHOR:-nginx}

((MEASURED <= KEYS)) || die "MEASURED ($MEASURED) must not exceed KEYS ($KEYS)"
[[ $ANCHOR == nginx || $ANCHOR == none ]] || die "ANCHOR must be nginx or none (it is $ANCHOR)"
command -v valgrind >/dev/null || {
    log "installing valgrind"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind >/dev/null
}
if [[ $ANCHOR == nginx ]]; then
    ok_count=$(nginx_ok_count)
    need_tools nginx
fi

build_binaries
UPSTREAM=$target/examples/bench_upstream
names=() bins=()
for pair in ${TOLLGATE_BINS:-tollgate=$tollgate_bin}; do
    names+=("${pair%%=*}") bins+=("${pair#*=}")
done
for bin in "${bins[@]}" "$UPSTREAM"; do
    [[ -x $bin ]] || die "$bin is missing: build without SKIP_BUILD"
done

work=$(mktemp -d /tmp/tollgate-instructions.XXXXXX)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n ${KEEP:-} ]]; then log "work folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

upstream_port=$(free_port)
"$UPSTREAM" "127.0.0.1:$upstream_port" 1 2>"$work/upstream.log" &
pids+=($!)
wait_port "$upstream_port" "${pids[-1]}" "the upstream" 120

port=$(free_port)
tollgate_config "$work/ok.toml" "$port" "$upstream_port" "$OK_RATE"
tollgate_config "$work/429.toml" "$port" "$upstream_port" "1/60s"

# tollgate creates the database; the keys go in all at once.
(cd "$work" && RUST_LOG=warn exec "${bins[0]}" serve --config ok.toml 2>>"$work/tollgate.log") &
first=$!
wait_port "$port" "$first" "tollgate" 120
kill -TERM "$first" && wait "$first" 2>/dev/null || true
python3 "$here/make_keys.py" "$work/keys.db" "$work/keys.txt" "$KEYS" >&2
head -n "$MEASURED" "$work/keys.txt" >"$work/measured.txt"

send() { # → counts of each status, one request per measured key
    python3 "$here/spend_keys.py" 127.0.0.1 "$port" "$PATH_UNDER_TEST" "$work/measured.txt"
}

# Starts the server COMMAND under callgrind, with instrumentation off, on $port.
measure() { # name, path (ok|429), command… → "Ir I1-misses D1-misses LL-misses" per request
    local name=$1 path=$2 out="$work/callgrind.$1.$2" pid expected status
    shift 2
    (cd "$work" && RUST_LOG=warn exec valgrind -q --tool=callgrind --instr-atstart=no \
        --cache-sim=yes --LL="$LL" --callgrind-out-file="$out" \
        "$@" 2>>"$work/$name.log") &
    pid=$!
    pids+=("$pid")
    wait_port "$port" "$pid" "$name under valgrind" 120
    if [[ $path == 429 ]]; then
        expected="429=$MEASURED"
        [[ $(send) == "200=$MEASURED" ]] || die "$name: the spending pass was not all 200"
    else
        expected="200=$MEASURED"
    fi
    status=$(send)
    [[ $status == "$expected" ]] || die "$name: the warm-up pass got $status, not $expected"
    callgrind_control -i on "$pid" >/dev/null 2>&1
    status=$(send)
    callgrind_control -i off "$pid" >/dev/null 2>&1
    [[ $status == "$expected" ]] || die "$name: the measured pass got $status, not $expected"
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    # events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
    awk -v n="$MEASURED" '/^events:/ && $0 != "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw" {
        print "unexpected " $0 > "/dev/stderr"; exit 1
    }
    /^totals:/ { printf "%.0f %.1f %.1f %.2f\n", $2 / n, $5 / n, ($6 + $7) / n, ($9 + $10) / n }' "$out"
}

declare -A result
for i in "${!names[@]}"; do
    for path in ok 429; do
        log "${names[$i]}, $path path"
        result[${names[$i]},$path]=$(measure "${names[$i]}" "$path" "${bins[$i]}" serve --config "$path.toml")
    done
done
if [[ $ANCHOR == nginx ]]; then
    for path in ok 429; do
        log "nginx, $path path"
        dir="$work/nginx-$path"
        mkdir -p "$dir"
        if [[ $path == ok ]]; then
            nginx_config "$dir/nginx.conf" "$dir" "$upstream_port" single "$port $ok_count $ok_count"
        else
            nginx_config "$dir/nginx.conf" "$dir" "$upstream_port" single "$port 1 0"
        fi
        result[nginx,$path]=$(measure nginx "$path" "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf")
    done
    names+=(nginx)
fi

echo
echo "tollgate work per request — $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo); $(valgrind --version)"
echo "$KEYS keys in the database, $MEASURED measured, one request per key, pipelined over 8 connections;"
echo "simulated last-level cache: $LL (size, ways, line)"
echo "admitted path: $OK_RATE per key; 429 path: 1/60s per key, each key refused once before"
echo
printf '| %-10s | %-8s | %14s | %14s | %14s | %14s |\n' build path "instructions" "I1 misses" "D1 misses" "LL misses"
printf '|%s|%s|%s|%s|%s|%s|\n' "------------" "----------" "---------------:" "---------------:" "---------------:" "---------------:"
for name in "${names[@]}"; do
    for path in ok 429; do
        read -r ir i1 d1 ll <<<"${result[$name,$path]}"
        printf '| %-10s | %-8s | %14s | %14s | %14s | %14s |\n' "$name" "$path" "$ir" "$i1" "$d1" "$ll"
    done
done
echo
echo "Per request, each server's user space only (callgrind; no kernel; nginx: its"
echo "one worker process). I1 and D1: simulated first-level instruction and data"
echo "cache misses; LL: last-level data misses, which go to memory. valgrind does"
echo "not offer the CPU's SHA instructions, so tollgate hashes each key with portable"
echo "code here, in more instructions than on the CPU itself."

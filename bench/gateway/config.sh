# Sourced by the gateway benchmarks (after setting `root`): their shared knobs,
# the build of what they measure, and what both servers under test are given.

KEYS=${KEYS:-100000}
PROFILE=${PROFILE:-production}
OK_RATE=${OK_RATE:-50/60s}
PATH_UNDER_TEST=/v1/items

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Builds tollgate and the benchmark upstream in $PROFILE (unless SKIP_BUILD is
# set) and sets `target`, the folder they are in, and `tollgate_bin`, the
# gateway measured by default: with PGO=1, the profile-guided build as
# deployed (scripts/build-pgo, about 20 minutes more), else $target/tollgate.
build_binaries() {
    if [[ -z ${SKIP_BUILD:-} ]]; then
        log "building ($PROFILE)"
        (cd "$root" && cargo build --profile "$PROFILE" -q -p tollgate -p tollgate-gateway --bin tollgate --example bench_upstream)
        if [[ -n ${PGO:-} ]]; then
            log "building the profile-guided gateway (scripts/build-pgo)"
            "$root/scripts/build-pgo"
        fi
    fi
    target=${CARGO_TARGET_DIR:-$root/target}/$PROFILE
    tollgate_bin=$target/tollgate
    [[ -z ${PGO:-} ]] || tollgate_bin=${PGO_DIR:-$root/target/pgo}/tollgate
}

# Waits until something listens on 127.0.0.1:PORT; stops the script when PID
# exits first or after SECONDS (10 unless given). Messages point at $work.
wait_port() { # port, pid, what, [seconds]
    local i seconds=${4:-10}
    for ((i = 0; i < seconds * 20; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited before listening on $1 (see $work)"
        sleep 0.05
    done
    die "$3 is not listening on $1 after $seconds s (see $work)"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# tollgate's configuration for the benchmarks: one route, one rolling per-key
# limit at RATE, the key in X-Api-Key, and escalation to 403 out of reach (the
# 429 path is measured as 429s, as nginx answers them).
tollgate_config() { # file, listen port, upstream port, rate
    cat >"$1" <<TOML
# Written by bench/gateway/$(basename "$0").
listen = "127.0.0.1:$2"
database = "keys.db"

[api_key]
header = "X-Api-Key"

# No blocks: the 429 path is measured as 429s, as nginx answers them.
[escalation]
strikes = 4000000000

[[upstreams]]
name = "api"
url = "http://127.0.0.1:$3"
timeout = "30s"

[[routes]]
name = "everything"
path = "/{*rest}"

[[limits]]
name = "per-key"
scope = "per-key"
rate = "$4"
algorithm = "rolling"
TOML
}

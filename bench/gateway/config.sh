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

# Installs what is missing of the COMMANDs given (wrk, nginx: Debian's packages
# of the same names; needs root) and sets NGINX to nginx's path.
need_tools() { # command…
    local missing=() tool policy=/usr/sbin/policy-rc.d own_policy= installed=1
    for tool in "$@"; do
        if [[ $tool == nginx ]]; then
            command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
        else
            command -v "$tool" >/dev/null || missing+=("$tool")
        fi
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        # Keep the package from starting a system nginx on port 80: the
        # benchmarks run their own. (Only when no policy says otherwise already.)
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
        fi
        { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; } || installed=
        [[ -z $own_policy ]] || rm -f "$policy"
        [[ -n $installed ]] || die "apt-get could not install ${missing[*]}"
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# OK_RATE's count, for nginx's `limit_req`, which counts per minute: stops the
# script unless OK_RATE is N/60s.
nginx_ok_count() {
    [[ ${OK_RATE#*/} == 60s ]] || die "OK_RATE must be N/60s for nginx, whose limit_req counts per minute (it is $OK_RATE)"
    echo "${OK_RATE%%/*}"
}

# nginx's configuration for the benchmarks: a reverse proxy to the upstream on
# UPSTREAM_PORT, with `limit_req` keyed on the API-key header, one server for
# each "PORT PER_MINUTE BURST" argument (BURST 0: none; a burst of N lets N
# requests through at once, then one every 60/PER_MINUTE s, close to
# tollgate's rolling window of N per 60 s). MODE is `workers` for nginx as
# deployed (`worker_processes auto`) or `single` for one process and no
# master, which callgrind can follow. Temporary files go under DIR.
nginx_config() { # file, dir, upstream port, mode, "port per-minute burst"...
    local file=$1 dir=$2 upstream=$3 mode=$4 zones="" servers="" server port per_minute burst limit i=0
    shift 4
    for server in "$@"; do
        read -r port per_minute burst <<<"$server"
        i=$((i + 1))
        limit="zone=keys_$i"
        ((burst == 0)) || limit+=" burst=$burst"
        # 100k keys need about 13 MB of zone.
        zones+="    limit_req_zone \$http_x_api_key zone=keys_$i:64m rate=${per_minute}r/m;"$'\n'
        # The location proxies, so limit_req really runs: nginx's \`return\`
        # answers before limit_req, and a location that only returns would
        # measure nothing.
        servers+="
    server {
        listen 127.0.0.1:$port;
        location / {
            limit_req $limit nodelay;
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Api-Key \"\";
        }
    }
"
    done
    local processes="worker_processes auto;"
    [[ $mode == single ]] && processes=$'worker_processes 1;\nmaster_process off;'
    cat >"$file" <<NGINX
# Written by bench/gateway/$(basename "$0").
$processes
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
    worker_connections 4096;
}

http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;

    upstream api {
        server 127.0.0.1:$upstream;
        keepalive 64;
    }

$zones    limit_req_status 429;
    # Refusals are logged at this level, below error_log's: nothing is written
    # per request (tollgate logs no 429 either).
    limit_req_log_level info;
$servers}
NGINX
}

#!/bin/sh
# Shows that the packaged builds work, on this x86_64 machine, against private brokers:
#  1. the aarch64 (and armv7, when built) binary runs `demo` under qemu-user for a few seconds
#     and its messages reach a local Mosquitto (the broker is named `localhost`, so static
#     name resolution is exercised too);
#  2. the x86_64 image runs under podman against the simulator (the host's binary, `simulate`)
#     and a local Mosquitto: `login` in the container stores the token in the volume, then
#     state and discovery appear, `podman stop` gives the bridge's
#     `offline` within 5 s and a clean exit, and a restart keeps state.json (same printer ids)
#     in the volume and reads the /data/config.toml put there.
# Run packaging/build.sh and packaging/build-image.sh x86_64 first. Not part of .ci/run: it
# needs the release cross builds. Everything started here is stopped on exit.
# PCM_PODMAN_RUN_ARGS: extra `podman run` options (e.g. "--runtime runc").
#
#   packaging/try-images.sh [qemu|image ...]     (default: both)
set -eu
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}

die() {
    echo "packaging/try-images.sh: FAILED: $*" >&2
    exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: install $2"; }
need mosquitto "mosquitto (Debian: apt-get install mosquitto)"
need mosquitto_sub "mosquitto-clients (Debian: apt-get install mosquitto-clients)"
need python3 "python3"

parts=${*:-qemu image}
work=$(mktemp -d)
pids=
container=
volume=
cleanup() {
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$container" ]; then podman rm -f -t 0 "$container" >/dev/null 2>&1 || true; fi
    if [ -n "$volume" ]; then podman volume rm -f "$volume" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
# wait_for SECONDS FILE EXTENDED-REGEX [FROM-LINE]: until a line (after FROM-LINE) matches.
wait_for() {
    deadline=$(awk "BEGIN { printf \"%.3f\", $(now) + $1 }")
    while ! tail -n +"$((${4:-0} + 1))" "$2" 2>/dev/null | grep -aEq "$3"; do
        if awk "BEGIN { exit !($(now) > $deadline) }"; then
            echo "--- $2:" >&2
            tail -n 20 "$2" >&2 || true
            die "no line matching '$3' in $2 within $1 s"
        fi
        sleep 0.1
    done
}
# wait_port SECONDS PORT: until something accepts connections on 127.0.0.1:PORT.
wait_port() {
    python3 - "$1" "$2" <<'EOF' || die "nothing listens on 127.0.0.1:$2 after $1 s"
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
}
# start_broker NAME: a private Mosquitto on a free port, and a subscriber to everything on it
# writing NAME.msgs. Sets $port.
start_broker() {
    port=$(free_port)
    mosquitto -p "$port" >"$work/$1.mosquitto.log" 2>&1 &
    pids="$pids $!"
    wait_port 10 "$port"
    # Pictures (camera, job preview) are left out: binary.
    mosquitto_sub -h 127.0.0.1 -p "$port" -v -t '#' -T '+/+/camera/+' -T '+/+/job/preview' \
        >"$work/$1.msgs" 2>&1 &
    pids="$pids $!"
}

try_qemu() { # try_qemu ARCH QEMU TRIPLE...
    arch=$1 qemu=$2
    shift 2
    binary=
    for triple in "$@"; do
        [ -f "$target_dir/$triple/dist/prusa-connect-mqtt" ] &&
            binary=$target_dir/$triple/dist/prusa-connect-mqtt && break
    done
    if [ -z "$binary" ]; then
        echo "$arch: skipped (no binary; run packaging/build.sh $arch)"
        return
    fi
    if ! command -v "$qemu" >/dev/null 2>&1; then
        echo "$arch: skipped ($qemu not found: install qemu-user-static)"
        return
    fi
    start_broker "$arch"
    # As root: the broker under a name only a private /etc/hosts knows, and no
    # /etc/nsswitch.conf (as in the image), so the static libc's own lookup is what is tried.
    host=localhost
    set -- "$qemu" "$binary"
    if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
        host=pcm-broker.test
        printf '127.0.0.1 localhost %s\n' "$host" >"$work/hosts"
        set -- unshare -m sh -c 'mount --bind "$0" /etc/hosts || exit 1
            [ ! -e /etc/nsswitch.conf ] || mount --bind /dev/null /etc/nsswitch.conf || exit 1
            exec "$@"' "$work/hosts" "$@"
    fi
    started=$(now)
    "$@" demo --broker "mqtt://$host:$port" --duration 6s >"$work/$arch.demo.log" 2>&1 || {
        tail -n 20 "$work/$arch.demo.log" >&2
        die "$arch: demo under $qemu failed"
    }
    wait_for 5 "$work/$arch.msgs" '^prusa_connect_demo/bridge/state online'
    wait_for 5 "$work/$arch.msgs" '^prusa_connect_demo/[a-z0-9_]+/state \{'
    wait_for 5 "$work/$arch.msgs" '^homeassistant/device/'
    echo "$arch: $binary ran demo under $qemu for $(awk "BEGIN { printf \"%.1f\", $(now) - $started }") s;" \
        "$(wc -l <"$work/$arch.msgs") messages on the broker ($host:$port)," \
        "$(grep -aEc '^prusa_connect_demo/[a-z0-9_]+/state \{' "$work/$arch.msgs") printer states," \
        "$(grep -ac '^homeassistant/device/' "$work/$arch.msgs") discovery messages"
}

# The printers' ids in the last B/bridge/info of FILE after line FROM: "uuid=id ...".
ids_from_info() {
    tail -n +"$(($2 + 1))" "$1" | grep -a '^pcm_image/bridge/info ' | tail -n 1 |
        cut -d' ' -f2- | python3 -c 'import json, sys
info = json.load(sys.stdin)
print(" ".join(sorted(p["uuid"] + "=" + p["id"] for p in info["printers"])))'
}

try_image() {
    need podman "podman (Debian: apt-get install podman)"
    image=prusa-connect-mqtt:amd64
    podman image exists "$image" || die "no image $image: run packaging/build-image.sh x86_64"
    # Some hosts (a container without CAP_SYS_RESOURCE, hybrid cgroups) refuse podman's
    # defaults: then runc (Debian: runc) with limits no higher than the current ones.
    run_args=${PCM_PODMAN_RUN_ARGS-}
    if ! podman run --rm $run_args "$image" --version >"$work/probe.log" 2>&1; then
        run_args="--runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096"
        podman run --rm $run_args "$image" --version >>"$work/probe.log" 2>&1 || {
            cat "$work/probe.log" >&2
            die "podman cannot run $image here (set PCM_PODMAN_RUN_ARGS)"
        }
        echo "image: podman's defaults fail here; running with: $run_args"
    fi
    sim_binary=$target_dir/x86_64-unknown-linux-musl/dist/prusa-connect-mqtt
    [ -x "$sim_binary" ] || sim_binary=$target_dir/dist/prusa-connect-mqtt
    [ -x "$sim_binary" ] || die "no host binary for the simulator: run packaging/build.sh x86_64"
    sim_port=$(free_port)
    "$sim_binary" simulate --listen "127.0.0.1:$sim_port" --printers 2 --user pcm@example.com:secret \
        >"$work/sim.log" 2>&1 &
    pids="$pids $!"
    wait_port 10 "$sim_port"
    start_broker image
    container=pcm-try-$$
    volume=pcm-try-$$
    podman volume create "$volume" >/dev/null
    # --network host: the simulator and the broker listen on the host's loopback.
    # Log in first, as a user would (the simulator's account server; the password on stdin).
    # shellcheck disable=SC2086 # run_args is several words
    printf 'secret\n' | podman run --rm -i $run_args --network host -v "$volume:/data" \
        -e PRUSA_CONNECT_MQTT__CONNECT__URL="http://127.0.0.1:$sim_port" \
        -e PRUSA_CONNECT_MQTT__CONNECT__AUTH_URL="http://127.0.0.1:$sim_port" \
        "$image" login --email pcm@example.com >"$work/login.log" 2>&1 || {
        cat "$work/login.log" >&2
        die "login in the container failed"
    }
    echo "image: login in the container: $(grep -a "Logged in" "$work/login.log")"
    # shellcheck disable=SC2086 # run_args is several words
    podman run -d $run_args --name "$container" --network host -v "$volume:/data" \
        -e PRUSA_CONNECT_MQTT__CONNECT__URL="http://127.0.0.1:$sim_port" \
        -e PRUSA_CONNECT_MQTT__CONNECT__AUTH_URL="http://127.0.0.1:$sim_port" \
        -e PRUSA_CONNECT_MQTT__CONNECT__POLL_INTERVAL=1s \
        -e PRUSA_CONNECT_MQTT__MQTT__URL="mqtt://127.0.0.1:$port" \
        -e PRUSA_CONNECT_MQTT__MQTT__BASE_TOPIC=pcm_image \
        -e PRUSA_CONNECT_MQTT__MQTT__CLIENT_ID="$container" \
        "$image" >/dev/null
    msgs=$work/image.msgs
    wait_for 30 "$msgs" '^pcm_image/bridge/state online'
    wait_for 30 "$msgs" '^pcm_image/[a-z0-9_]+/state \{'
    wait_for 30 "$msgs" '^homeassistant/device/[^ ]+/config \{'
    wait_for 30 "$msgs" '^pcm_image/bridge/info \{.*"status":"ok"'
    ids=$(ids_from_info "$msgs" 0)
    [ -n "$ids" ] || die "bridge/info lists no printers"
    user=$(podman inspect --format '{{.Config.User}}' "$container")
    if [ "$(id -u)" = 0 ]; then
        data=$(podman volume inspect --format '{{.Mountpoint}}' "$volume")
        user="$user (/data owned by $(stat -c %u:%g "$data"))"
    fi
    echo "image: $image runs as $user; state and discovery on the broker: $(grep -aEc '^pcm_image/[a-z0-9_]+/state \{' "$msgs") printer states," \
        "$(grep -aEc '^homeassistant/device/[^ ]+/config \{' "$msgs") discovery messages; printers $ids"

    from=$(wc -l <"$msgs")
    started=$(now)
    podman stop -t 10 "$container" >/dev/null
    wait_for 5 "$msgs" '^pcm_image/bridge/state offline' "$from"
    took=$(awk "BEGIN { printf \"%.2f\", $(now) - $started }")
    code=$(podman inspect --format '{{.State.ExitCode}}' "$container")
    [ "$code" = 0 ] || die "the container exited with $code after podman stop (not a clean stop)"
    podman cp "$container:/data/state.json" "$work/state.json" ||
        die "no /data/state.json in the volume after the stop"
    echo "image: podman stop: offline on the broker and exit code 0 within $took s; /data/state.json $(wc -c <"$work/state.json") bytes"

    # The config file in the volume is read at the restart (the environment still wins).
    printf '[homeassistant]\ndiscovery_prefix = "from_config_file"\n' >"$work/config.toml"
    podman cp "$work/config.toml" "$container:/data/config.toml"
    from=$(wc -l <"$msgs")
    podman start "$container" >/dev/null
    wait_for 30 "$msgs" '^pcm_image/bridge/state online' "$from"
    wait_for 30 "$msgs" '^from_config_file/device/[^ ]+/config \{' "$from"
    wait_for 30 "$msgs" '^pcm_image/bridge/info \{' "$from"
    again=$(ids_from_info "$msgs" "$from")
    [ "$again" = "$ids" ] || die "the printers' ids changed across the restart: $ids, then $again"
    podman logs "$container" 2>&1 | grep -q 'starting fresh' && die "the state file was not readable after the restart"
    podman stop -t 10 "$container" >/dev/null
    echo "image: restarted with the same volume: same printer ids ($again), state.json kept," \
        "/data/config.toml read (discovery under from_config_file/)"
}

for part in $parts; do
    case $part in
    qemu)
        try_qemu aarch64 qemu-aarch64-static aarch64-unknown-linux-musl
        try_qemu armv7 qemu-arm-static armv7-unknown-linux-musleabihf armv7-unknown-linux-gnueabihf
        ;;
    image) try_image ;;
    *) die "unknown part $part (expected qemu or image)" ;;
    esac
done
echo "all good"

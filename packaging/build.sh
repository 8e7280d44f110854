#!/bin/sh
# Builds the static release binaries for the boards Home Assistant runs on, checks that each
# is static, prints their sizes, and (with --deb) builds a .deb per architecture.
#
#   packaging/build.sh [--deb] [x86_64|aarch64|armv7 ...]     (default: all three)
#
# x86_64  x86_64-unknown-linux-musl        linked by musl-gcc (Debian: musl-tools)
# aarch64 aarch64-unknown-linux-musl       linked by Zig (PyPI: ziglang, cargo-zigbuild)
# armv7   armv7-unknown-linux-musleabihf   when rustup has it, linked by Zig; otherwise
#         armv7-unknown-linux-gnueabihf    static glibc (+crt-static), linked by Debian's
#                                          gcc-arm-linux-gnueabihf (+ libc6-dev-armhf-cross)
# Results: target/<triple>/dist/prusa-connect-mqtt (and target/<triple>/debian/*.deb).
# Running it again rebuilds only what changed. Builds are slow on a small machine: nice them.
set -eu
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}

die() {
    echo "packaging/build.sh: $*" >&2
    exit 1
}
need() { # need COMMAND WHAT-TO-INSTALL
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: install $2"
}
have_target() {
    rustup target list --installed 2>/dev/null | grep -qx "$1"
}
need_target() {
    have_target "$1" || die "the Rust target $1 is not installed: rustup target add $1"
}
need_zig() {
    need cargo-zigbuild "cargo-zigbuild (pip install cargo-zigbuild, or cargo install cargo-zigbuild)"
    if ! command -v zig >/dev/null 2>&1 && ! python3 -m ziglang version >/dev/null 2>&1; then
        die "zig not found: install it (pip install ziglang, or a zig release on PATH)"
    fi
}

deb=0
arches=
for arg in "$@"; do
    case $arg in
    --deb) deb=1 ;;
    x86_64 | aarch64 | armv7) arches="$arches $arg" ;;
    -h | --help)
        sed -n '2,13p' "$0"
        exit 0
        ;;
    *) die "unknown argument $arg (expected --deb, x86_64, aarch64 or armv7)" ;;
    esac
done
[ -n "$arches" ] || arches="x86_64 aarch64 armv7"

need cargo "Rust (https://rustup.rs)"
need rustup "rustup (https://rustup.rs)"
need file "file (Debian: file)"
if [ $deb = 1 ]; then
    cargo deb --version >/dev/null 2>&1 || die "cargo-deb not found: cargo install cargo-deb"
fi

# The triple each architecture is built for (armv7 depends on what rustup offers).
triple_of() {
    case $1 in
    x86_64) echo x86_64-unknown-linux-musl ;;
    aarch64) echo aarch64-unknown-linux-musl ;;
    armv7)
        if have_target armv7-unknown-linux-musleabihf; then
            echo armv7-unknown-linux-musleabihf
        else
            echo armv7-unknown-linux-gnueabihf
        fi
        ;;
    esac
}

build() { # build ARCH TRIPLE
    need_target "$2"
    case $2 in
    x86_64-unknown-linux-musl)
        need musl-gcc "musl-tools (Debian: apt-get install musl-tools)"
        CC_x86_64_unknown_linux_musl=musl-gcc \
            cargo build --profile dist --locked -p prusa-connect-mqtt --target "$2"
        ;;
    *-musl | *-musleabihf)
        need_zig
        cargo zigbuild --profile dist --locked -p prusa-connect-mqtt --target "$2"
        ;;
    armv7-unknown-linux-gnueabihf)
        # No musl std for armv7 here: glibc, linked statically. glibc (2.34 and later) has
        # the files and dns name services built in, so name resolution needs no libnss_*.so.
        need arm-linux-gnueabihf-gcc \
            "gcc-arm-linux-gnueabihf and libc6-dev-armhf-cross (Debian: apt-get install gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)"
        CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
            CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS="-C target-feature=+crt-static" \
            CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc \
            AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar \
            cargo build --profile dist --locked -p prusa-connect-mqtt --target "$2"
        ;;
    *) die "no recipe for $2" ;;
    esac
}

check_static() { # check_static BINARY
    description=$(file -L "$1")
    case $description in
    *"dynamically linked"* | *interpreter*) die "$1 is not static: $description" ;;
    *"statically linked"* | *"static-pie linked"*) ;;
    *) die "cannot tell whether $1 is static: $description" ;;
    esac
}

summary=
for arch in $arches; do
    triple=$(triple_of "$arch")
    echo "== $arch ($triple)"
    build "$arch" "$triple"
    binary=$target_dir/$triple/dist/prusa-connect-mqtt
    [ -f "$binary" ] || die "the build did not produce $binary"
    check_static "$binary"
    bytes=$(wc -c <"$binary")
    line="$arch $triple $bytes bytes ($(awk "BEGIN { printf \"%.1f\", $bytes / 1048576 }") MiB), static"
    if [ $deb = 1 ]; then
        # --no-build: cargo-deb takes the binary above (its assets' target/release path
        # becomes target/<triple>/dist with --target and --profile).
        cargo deb --no-build --profile dist --target "$triple" -p prusa-connect-mqtt
        package=$(ls -t "$target_dir/$triple/debian/"prusa-connect-mqtt_*.deb | head -n 1)
        line="$line, $package"
    fi
    summary="$summary$line
"
done
echo "== built"
printf '%s' "$summary"

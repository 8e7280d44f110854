#!/bin/sh
# Copies the static builds into addon/bin/, named by Home Assistant architecture, so that the
# Supervisor can build the add-on's image on the device (see addon/Dockerfile).
# Build them first: packaging/build.sh. armv7 is musl when rustup has that target, otherwise
# static glibc (armv7-unknown-linux-gnueabihf with +crt-static); either is taken.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../target}
mkdir -p "$here/bin"
missing=0
for pair in amd64:x86_64-unknown-linux-musl aarch64:aarch64-unknown-linux-musl \
    armv7:armv7-unknown-linux-musleabihf armv7:armv7-unknown-linux-gnueabihf; do
    arch=${pair%%:*}
    triple=${pair#*:}
    if [ "$arch" = armv7 ] && [ "$triple" = armv7-unknown-linux-gnueabihf ] &&
        [ -f "$target/armv7-unknown-linux-musleabihf/dist/prusa-connect-mqtt" ]; then
        continue # the musl build was taken
    fi
    if [ "$arch" = armv7 ] && [ "$triple" = armv7-unknown-linux-musleabihf ] &&
        [ ! -f "$target/$triple/dist/prusa-connect-mqtt" ]; then
        continue # try the static glibc build next
    fi
    binary=$target/$triple/dist/prusa-connect-mqtt
    if [ -f "$binary" ]; then
        cp "$binary" "$here/bin/prusa-connect-mqtt-$arch"
        echo "$arch: $(wc -c <"$binary") bytes from $binary"
    else
        echo "$arch: missing $binary (build it for $triple first)" >&2
        missing=1
    fi
done
exit $missing

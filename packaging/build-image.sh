#!/bin/sh
# Builds the FROM-scratch container image (packaging/Containerfile) for each architecture from
# the static binaries packaging/build.sh made, and prints each image's size.
#
#   packaging/build-image.sh [x86_64|aarch64|armv7 ...]      (default: all three)
#
# Tags: prusa-connect-mqtt:<version>-<arch> and prusa-connect-mqtt:<arch>, with <arch> amd64,
# arm64 or armv7. No registry is needed: the image has no base. The CA certificates come from
# this machine (Debian: ca-certificates), or from $CA_BUNDLE.
set -eu
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

die() {
    echo "packaging/build-image.sh: $*" >&2
    exit 1
}
command -v podman >/dev/null 2>&1 || die "podman not found: install podman (Debian: apt-get install podman)"
[ -s "$ca_bundle" ] || die "no CA bundle at $ca_bundle: install ca-certificates (or set CA_BUNDLE)"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

arches=
for arg in "$@"; do
    case $arg in
    x86_64 | aarch64 | armv7) arches="$arches $arg" ;;
    *) die "unknown argument $arg (expected x86_64, aarch64 or armv7)" ;;
    esac
done
[ -n "$arches" ] || arches="x86_64 aarch64 armv7"

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
summary=
for arch in $arches; do
    case $arch in
    x86_64) triples=x86_64-unknown-linux-musl podman_arch="--arch amd64" tag=amd64 ;;
    aarch64) triples=aarch64-unknown-linux-musl podman_arch="--arch arm64" tag=arm64 ;;
    armv7)
        # Whichever build.sh made: musl when rustup had it, else static glibc.
        triples="armv7-unknown-linux-musleabihf armv7-unknown-linux-gnueabihf"
        podman_arch="--arch arm --variant v7" tag=armv7
        ;;
    esac
    binary=
    for triple in $triples; do
        if [ -f "$target_dir/$triple/dist/prusa-connect-mqtt" ]; then
            binary=$target_dir/$triple/dist/prusa-connect-mqtt
            break
        fi
    done
    [ -n "$binary" ] || die "no $arch binary in $target_dir/{$(echo $triples | tr ' ' ,)}/dist: run packaging/build.sh $arch first"
    case $(file -L "$binary") in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) die "$binary is not static; a FROM-scratch image needs a static binary" ;;
    esac
    rm -rf "${context:?}"/*
    mkdir -p "$context/bin" "$context/data"
    cp "$binary" "$context/bin/prusa-connect-mqtt"
    cp "$ca_bundle" "$context/ca-certificates.crt"
    # shellcheck disable=SC2086 # podman_arch is two or four words
    podman build --quiet $podman_arch -f packaging/Containerfile \
        -t "prusa-connect-mqtt:$version-$tag" -t "prusa-connect-mqtt:$tag" "$context" >/dev/null
    bytes=$(podman image inspect --format '{{.Size}}' "prusa-connect-mqtt:$tag")
    summary="${summary}prusa-connect-mqtt:$version-$tag $bytes bytes ($(awk "BEGIN { printf \"%.1f\", $bytes / 1048576 }") MiB) from $binary
"
done
printf '%s' "$summary"

#!/usr/bin/env bash
# Builds the images the test bed's node runs, without Docker and without a registry:
#   - a Python base image from a local Debian root filesystem (mmdebstrap), standing in for the
#     Containerfile's registry base (it is passed as the PYTHON_IMAGE build argument);
#   - the operator image from the project's own Containerfile (buildah);
#   - the pod sandbox ("pause") image from pause.c.
# Each is written as a docker-archive tarball named by a content hash of its inputs, so a warm run only
# hashes the build context. Prints three lines: "<name> <tarball> <image reference>".
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cache=${DBAASCTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbaasctl}/images
suite=bookworm
mkdir -p "$cache"
# vfs: no overlay mounts, so an interrupted build leaves nothing mounted on the machine.
B=(buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver vfs)
stamp() { date +%s; }

hash_files() { # stdin: paths relative to $1; prints one digest of names and contents
  local base=$1
  (cd "$base" && LC_ALL=C sort | while read -r f; do printf '%s\0' "$f"; sha256sum < "$f"; done) | sha256sum | cut -c1-16
}

# -- base: a minimal Debian with Python, pip in a venv at /usr/local (what python:3.x-slim provides) --
# The machine's own CA certificates go in too, so pip and apt inside the build trust what the machine
# trusts (a TLS-intercepting egress proxy, for one).
local_cas=$(find /usr/local/share/ca-certificates -type f -name '*.crt' 2>/dev/null | LC_ALL=C sort || true)
base_key=$( { echo "$suite python3 python3-venv ca-certificates v1"; cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true;
  for c in $local_cas; do sha256sum "$c"; done; } | sha256sum | cut -c1-16)
base_ref=localhost/dbaasctl-testbed/python-base:$base_key
if ! "${B[@]}" inspect --type image "$base_ref" >/dev/null 2>&1; then
  t=$(stamp)
  rootfs="$cache/rootfs-$base_key.tar"
  if [ ! -s "$rootfs" ]; then
    sources=/etc/apt/sources.list.d/debian.sources
    [ -f "$sources" ] || sources=http://deb.debian.org/debian
    mmdebstrap --quiet --format=tar --mode=root --variant=minbase --include=python3,python3-venv,ca-certificates \
      --aptopt='Acquire::Check-Valid-Until "false"' \
      --customize-hook='cp -a /usr/local/share/ca-certificates/. "$1/usr/local/share/ca-certificates/" 2>/dev/null || true' \
      --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
      --customize-hook='chroot "$1" python3 -m venv /usr/local' \
      "$suite" "$rootfs.part" "$sources"
    mv "$rootfs.part" "$rootfs"
  fi
  ctr=$("${B[@]}" from scratch)
  "${B[@]}" add --quiet "$ctr" "$rootfs" / >/dev/null
  "${B[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt --cmd python3 "$ctr"
  "${B[@]}" commit --quiet --rm "$ctr" "$base_ref" >/dev/null
  rm -f "$rootfs"
  echo "built base image $base_ref in $(( $(stamp) - t ))s" >&2
fi

# -- the operator image: the context is what .containerignore lets through (pyproject, README, src) --
context_key=$( { echo "$base_key"; (cd "$repo" && find pyproject.toml README.md Containerfile .containerignore src -type f \
  ! -path '*/__pycache__/*' ! -name '*.py[cod]' ! -path '*.egg-info/*') | hash_files "$repo"; } | sha256sum | cut -c1-16)
operator_ref=localhost/dbaasctl/dbaasctl:e2e-$context_key
operator_tar="$cache/operator-$context_key.tar"
if [ ! -s "$operator_tar" ]; then
  t=$(stamp)
  "${B[@]}" bud --quiet --isolation chroot --pull=never --layers=false \
    --build-arg "PYTHON_IMAGE=$base_ref" --unsetenv PIP_CERT \
    -f "$repo/Containerfile" -t "$operator_ref" "$repo" >/dev/null
  "${B[@]}" push --quiet "$operator_ref" "docker-archive:$operator_tar.part:$operator_ref"
  mv "$operator_tar.part" "$operator_tar"
  find "$cache" -maxdepth 1 -name 'operator-*.tar' ! -name "operator-$context_key.tar" -delete
  # The tarball is the cache; the builder's copies (and the build stage's) would only fill the disk.
  "${B[@]}" rmi "$operator_ref" >/dev/null 2>&1 || true
  "${B[@]}" rmi --prune >/dev/null 2>&1 || true
  echo "built operator image $operator_ref in $(( $(stamp) - t ))s" >&2
fi

# -- the pod sandbox image: one static binary -------------------------------------------------------
pause_key=$(sha256sum "$here/pause.c" | cut -c1-16)
pause_ref=localhost/dbaasctl-testbed/pause:$pause_key
pause_tar="$cache/pause-$pause_key.tar"
if [ ! -s "$pause_tar" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  gcc -static -O2 -o "$work/pause" "$here/pause.c"
  ctr=$("${B[@]}" from scratch)
  "${B[@]}" copy --quiet "$ctr" "$work/pause" /pause >/dev/null
  "${B[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
  "${B[@]}" commit --quiet --rm "$ctr" "$pause_ref" >/dev/null
  "${B[@]}" push --quiet "$pause_ref" "docker-archive:$pause_tar.part:$pause_ref"
  mv "$pause_tar.part" "$pause_tar"
  "${B[@]}" rmi "$pause_ref" >/dev/null 2>&1 || true
fi

echo "operator $operator_tar $operator_ref"
echo "pause $pause_tar $pause_ref"

#!/usr/bin/env bash
# Installs the Debian packages guestlist needs to build, test and run, when
# any is missing. Everything comes from Debian's archive (no other network).
set -euo pipefail

PACKAGES=(
  bazel-bootstrap bazel-rules-java
  g++ libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libpq-dev postgresql postgresql-client
  libgtest-dev libgmock-dev libbenchmark-dev
  libsodium-dev libcurl4-openssl-dev libcsv-dev nlohmann-json3-dev
  libboost-dev grpc-proto
  python3 python3-aiosmtpd python3-grpcio python3-protobuf python3-yaml
  curl wrk kubectl ca-certificates procps iproute2
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian postgresql package may start a default cluster; we run our own.

#!/usr/bin/env bash
# Builds the four guestlist images with deploy/docker/Dockerfile.
#   REGISTRY  image name prefix (default guestlist)
#   TAG       image tag (default dev)
#   PUSH=1    push after building
# Needs a container engine (docker with BuildKit, or podman); none runs on
# the development machines this repository is built on.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
REGISTRY=${REGISTRY:-guestlist}
TAG=${TAG:-dev}
ENGINE=${ENGINE:-docker}
for svc in identity membership notification gateway; do
  image="$REGISTRY/$svc:$TAG"
  echo "== $image" >&2
  "$ENGINE" build -f "$ROOT/deploy/docker/Dockerfile" --build-arg "SERVICE=$svc" -t "$image" "$ROOT"
  if [[ "${PUSH:-0}" == 1 ]]; then "$ENGINE" push "$image"; fi
done

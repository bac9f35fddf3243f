#!/usr/bin/env bash
# Renders every overlay in deploy/k8s/overlays with `kubectl kustomize` and
# checks the result with check_manifests.py; first proves the checker
# still fails on the broken fixtures in testdata/ (each expected finding
# listed in <fixture>.expected must be reported, and the exit status must
# be 1). Runs under `bazel test //tests/k8s:manifests_test` or directly.
set -euo pipefail

if [[ -n "${TEST_SRCDIR:-}" ]]; then
  RUNFILES="$TEST_SRCDIR/${TEST_WORKSPACE:-guestlist}"
else
  RUNFILES=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
fi
CHECK="$RUNFILES/tests/k8s/check_manifests.py"
TESTDATA="$RUNFILES/tests/k8s/testdata"
# The workspace (for the C++ sources): where the checker's runfile points.
SOURCES=${GUESTLIST_SOURCES:-$(cd "$(dirname "$(readlink -f "$CHECK")")/../.." && pwd)}
PY=/usr/bin/python3
if [[ -n "${TEST_TMPDIR:-}" ]]; then
  TMP=$TEST_TMPDIR
else
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
fi
command -v kubectl >/dev/null || { echo "kubectl not installed (deploy/local/install-deps.sh)" >&2; exit 1; }
"$PY" -c 'import yaml' || { echo "python3-yaml not installed (deploy/local/install-deps.sh)" >&2; exit 1; }

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# --- 1. negative self-checks: the checker must catch planted problems ----
for fixture in broken broken_network; do
  rc=0
  out=$("$PY" "$CHECK" --sources "$SOURCES" --require-tls \
    --docs "$TESTDATA/$fixture.yaml" "$TESTDATA/$fixture.yaml") || rc=$?
  if [[ $rc -ne 1 ]]; then
    fail "checker exited $rc (want 1) on testdata/$fixture.yaml"
    echo "$out" >&2
  fi
  missing=0
  while IFS= read -r expected; do
    [[ -z "$expected" || "$expected" == \#* ]] && continue
    if ! grep -qF -- "ERROR $expected" <<<"$out"; then
      fail "testdata/$fixture.yaml: not reported: $expected"
      missing=1
    fi
  done <"$TESTDATA/$fixture.expected"
  if [[ $missing -ne 0 ]]; then echo "checker said:"; echo "$out"; fi >&2
  echo "ok: checker rejects testdata/$fixture.yaml ($(grep -c '^ERROR' <<<"$out") findings)"
done

# --- 2. every overlay renders and passes ---------------------------------
# Copy the manifests out of the runfiles tree: kustomize refuses files that
# resolve (through symlinks) outside the kustomization root.
rm -rf "$TMP/k8s"
cp -rL "$RUNFILES/deploy/k8s" "$TMP/k8s"
if ! kubectl kustomize "$TMP/k8s/base" >"$TMP/base.yaml"; then
  fail "deploy/k8s/base does not render"
fi
overlays=$(cd "$TMP/k8s/overlays" && ls)
[[ -n "$overlays" ]] || fail "no overlays found"
for overlay in $overlays; do
  args=()
  case "$overlay" in
    # The guide must name every flag; checked once.
    dev) args=(--docs "$SOURCES/docs/OPERATIONS.md") ;;
    prod) args=(--min-replicas 2 --require-tls) ;;
  esac
  if ! kubectl kustomize "$TMP/k8s/overlays/$overlay" >"$TMP/$overlay.yaml"; then
    fail "overlays/$overlay does not render"
    continue
  fi
  if "$PY" "$CHECK" --sources "$SOURCES" "${args[@]}" "$TMP/$overlay.yaml"; then
    echo "ok: overlays/$overlay"
  else
    fail "overlays/$overlay has problems (above)"
  fi
done

if [[ $failures -ne 0 ]]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "all manifest checks passed"

#!/usr/bin/env bash
# Creates the guestlist-secrets Secret for the dev overlay with random
# values, so no secret is ever written into the repository. Run it once
# before `kubectl apply -k deploy/k8s/overlays/dev`; it leaves an existing
# Secret alone (delete it first to rotate everything).
#   NAMESPACE   target namespace (default guestlist)
#   SMTP_URL    mail relay (default file:///tmp: .eml files inside the
#               notification pod; `kubectl exec deploy/notification -- ls /tmp`)
set -euo pipefail

NAMESPACE=${NAMESPACE:-guestlist}
SMTP_URL=${SMTP_URL:-file:///tmp}

if kubectl get secret guestlist-secrets -n "$NAMESPACE" >/dev/null 2>&1; then
  echo "secret guestlist-secrets already exists in $NAMESPACE; leaving it" >&2
  exit 0
fi
kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl create namespace "$NAMESPACE"

random() { head -c 32 /dev/urandom | base64 | tr -d '=+/\n'; }
pg_password=$(random)
operator_token=$(random)
db_url() { echo "host=postgres port=5432 user=guestlist password=$pg_password dbname=guestlist_$1"; }

kubectl create secret generic guestlist-secrets -n "$NAMESPACE" \
  --from-literal=operator-token="$operator_token" \
  --from-literal=internal-token="$(random)" \
  --from-literal=unsubscribe-secret="$(random)" \
  --from-literal=postgres-password="$pg_password" \
  --from-literal=identity-database-url="$(db_url identity)" \
  --from-literal=membership-database-url="$(db_url membership)" \
  --from-literal=notification-database-url="$(db_url notification)" \
  --from-literal=smtp-url="$SMTP_URL" >/dev/null
echo "created secret guestlist-secrets in $NAMESPACE"
echo "operator token: $operator_token"

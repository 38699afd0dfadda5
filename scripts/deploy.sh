#!/usr/bin/env bash
# Deploy one image to one environment with kubectl + kustomize, smoke test it, roll back on failure.
#   scripts/deploy.sh dev|prod IMAGE_REF        (IMAGE_REF: registry/name@sha256:... or :tag)
# Order: migrations Job first (waits for it), then everything else, then rollout status,
# then the smoke test from inside the cluster. Any failure after the apply rolls every
# Deployment back to its previous ReplicaSet (`kubectl rollout undo`) and exits non-zero.
# Migrations are expand/contract (backward compatible), so the old pods run on the new schema.
set -euo pipefail
cd "$(dirname "$0")/.."

overlay=${1:?usage: deploy.sh dev|prod IMAGE_REF}
image=${2:?usage: deploy.sh dev|prod IMAGE_REF}
case "$overlay" in dev|prod) ;; *) echo "unknown environment: $overlay" >&2; exit 2 ;; esac

namespace=$(sed -n 's/^namespace: *//p' "deploy/k8s/overlays/$overlay/kustomization.yaml")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r deploy/k8s "$work/k8s"
(cd "$work/k8s/overlays/$overlay" && kubectl kustomize . >/dev/null && \
  sed -i "s|newName: .*|newName: ${image%%[@:]*}|" kustomization.yaml && \
  if [[ $image == *@* ]]; then sed -i "s|newTag: .*|digest: ${image#*@}|" kustomization.yaml; \
  else sed -i "s|newTag: .*|newTag: ${image##*:}|" kustomization.yaml; fi)
kubectl kustomize "$work/k8s/overlays/$overlay" > "$work/manifests.yaml"

kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace"

echo "== migrations"
kubectl -n "$namespace" delete job alexandrite-migrate --ignore-not-found --wait=true
kubectl -n "$namespace" apply -f "$work/manifests.yaml" --selector app.kubernetes.io/component=migrate
kubectl -n "$namespace" wait --for=condition=complete --timeout=900s job/alexandrite-migrate

rollback() {
  echo "== deploy failed: rolling back" >&2
  for deployment in shop crm mes pricing-worker; do
    kubectl -n "$namespace" rollout undo "deployment/$deployment" || true
  done
  for deployment in shop crm mes pricing-worker; do
    kubectl -n "$namespace" rollout status "deployment/$deployment" --timeout=300s || true
  done
  exit 1
}

echo "== apply"
kubectl -n "$namespace" apply -f "$work/manifests.yaml" || rollback
for deployment in shop crm mes pricing-worker; do
  kubectl -n "$namespace" rollout status "deployment/$deployment" --timeout=600s || rollback
done

echo "== smoke test"
kubectl -n "$namespace" run "smoke-$(date +%s)" --rm -i --restart=Never --image="$image" \
  --overrides='{"spec":{"securityContext":{"runAsNonRoot":true,"runAsUser":10001}}}' \
  --command -- python -m alexandrite.ops.smoke || rollback
echo "== $overlay runs $image"

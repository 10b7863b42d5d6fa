#!/usr/bin/env bash
# Regenerates deploy/kubernetes from the Helm chart's default values.
set -euo pipefail
cd "$(dirname "$0")/../test/chart"
exec go run ./cmd/render-manifests "$@"

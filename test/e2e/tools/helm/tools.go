//go:build tools

// Package helm pins the helm CLI make e2e builds.
package helm

import _ "helm.sh/helm/v3/cmd/helm"

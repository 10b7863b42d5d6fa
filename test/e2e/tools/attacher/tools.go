//go:build tools

// Package attacher pins the sidecar make e2e builds.
package attacher

import _ "github.com/kubernetes-csi/external-attacher/v4/cmd/csi-attacher"

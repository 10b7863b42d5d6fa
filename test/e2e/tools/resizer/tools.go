//go:build tools

// Package resizer pins the sidecar make e2e builds.
package resizer

import _ "github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer"

//go:build tools

// Package provisioner pins the sidecar make e2e builds.
package provisioner

import _ "github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner"

package mount

import (
	"testing"

	"github.com/vsphere-cns/vsphere-csi/test/sanity"
)

// TestSanityMount: csi-sanity with filesystem (mount) volumes.
func TestSanityMount(t *testing.T) { sanity.Run(t, "mount") }

package block

import (
	"testing"

	"github.com/vsphere-cns/vsphere-csi/test/sanity"
)

// TestSanityBlock: csi-sanity with raw block volumes.
func TestSanityBlock(t *testing.T) { sanity.Run(t, "block") }

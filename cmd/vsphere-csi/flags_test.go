package main

import (
	"strings"
	"testing"

	"github.com/vsphere-cns/vsphere-csi/pkg/registration"
)

func TestRegistrationAndHealthzFlags(t *testing.T) {
	o, err := parseFlags([]string{"--mode=node", "--kubelet-registration-path=/var/lib/kubelet/plugins/csi.vsphere.vmware.com/csi.sock", "--healthz-address=127.0.0.1:9808"})
	if err != nil {
		t.Fatal(err)
	}
	if o.pluginRegistrationDir != registration.DefaultDir || o.healthzAddress != "127.0.0.1:9808" ||
		o.kubeletRegistrationPath != "/var/lib/kubelet/plugins/csi.vsphere.vmware.com/csi.sock" {
		t.Errorf("parsed %+v", o)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode=controller", "--kubelet-registration-path=/x/csi.sock"}, "only the node plugin"},
		{[]string{"--mode=node", "--kubelet-registration-path=csi.sock"}, "absolute path"},
	} {
		if _, err := parseFlags(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%v) = %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}

func TestNodeUUIDsFlag(t *testing.T) {
	o, err := parseFlags([]string{"--mode=controller", "--node-uuids", " 42000000-0000-0000-0000-000000000001,,42000000-0000-0000-0000-000000000002 ", "--kubeconfig=/etc/kubeconfig"})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.nodeUUIDs) != 2 || o.nodeUUIDs[1] != "42000000-0000-0000-0000-000000000002" || o.kubeconfig != "/etc/kubeconfig" {
		t.Errorf("parsed %q, kubeconfig %q", o.nodeUUIDs, o.kubeconfig)
	}
}

package app

import (
	"bytes"
	"context"
	"errors"
	"os"
	"reflect"
	"time"

	"k8s.io/klog/v2"

	"github.com/vsphere-cns/vsphere-csi/pkg/config"
	"github.com/vsphere-cns/vsphere-csi/pkg/vcenter"
)

// ErrConfigChanged ends Run when csi-vsphere.conf changed in a way the
// running controller can't take on (another vCenter, cluster ID, TLS
// settings, datacenters, topology): the process exits and is started
// again (the Deployment restarts it), reading the new file.
var ErrConfigChanged = errors.New("csi-vsphere.conf changed; exiting to start again with it")

// configPoll is how often the controller looks at its config file. A
// mounted Secret changes in place about a minute after the Secret does.
const configPoll = 10 * time.Second

// watchConfig re-reads the config file when it changes: new credentials (a
// rotated Secret) are used at the next login without a restart; any other
// change calls restart. A file that does not parse is logged (never
// quoted: config.Parse does not) and the running configuration stays.
func watchConfig(ctx context.Context, path string, every time.Duration, cur *config.Config, vc vcenter.Client, restart func()) {
	last, _ := os.ReadFile(path)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(path)
		if err != nil || bytes.Equal(data, last) {
			continue
		}
		last = data
		next, err := config.Parse(bytes.NewReader(data), path)
		if err != nil {
			klog.ErrorS(err, "csi-vsphere.conf changed but can't be used; going on with the one read before")
			continue
		}
		if !sameButCredentials(cur, next) {
			klog.InfoS("csi-vsphere.conf changed beyond the credentials; exiting to start again with it")
			restart()
			return
		}
		if cur.VirtualCenter.User != next.VirtualCenter.User || cur.VirtualCenter.Password != next.VirtualCenter.Password {
			vc.SetCredentials(next.VirtualCenter.User, next.VirtualCenter.Password.Reveal())
		}
		cur = next
	}
}

// sameButCredentials says whether two configurations differ in nothing
// but the user and password.
func sameButCredentials(a, b *config.Config) bool {
	x, y := *a, *b
	x.VirtualCenter.User, x.VirtualCenter.Password = "", ""
	y.VirtualCenter.User, y.VirtualCenter.Password = "", ""
	return reflect.DeepEqual(x, y)
}

package sim

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

func TestInventory(t *testing.T) {
	s := startSim(t, Options{})
	c := connect(t, s)
	ctx := context.Background()

	// Only our node VMs exist, findable by BIOS UUID.
	var vms []mo.VirtualMachine
	finder := find.NewFinder(c.vim, true)
	dc, err := finder.Datacenter(ctx, s.Datacenter())
	if err != nil {
		t.Fatal(err)
	}
	finder.SetDatacenter(dc)
	list, err := finder.VirtualMachineList(ctx, "*")
	if err != nil {
		t.Fatal(err)
	}
	refs := make([]types.ManagedObjectReference, len(list))
	for i, vm := range list {
		refs[i] = vm.Reference()
	}
	if err := property.DefaultCollector(c.vim).Retrieve(ctx, refs, []string{"name", "config.uuid", "runtime.host"}, &vms); err != nil {
		t.Fatal(err)
	}
	if len(vms) != 3 || len(s.NodeVMs()) != 3 {
		t.Fatalf("want exactly 3 VMs, inventory has %d, NodeVMs %d", len(vms), len(s.NodeVMs()))
	}
	hosts := map[types.ManagedObjectReference]bool{}
	si := object.NewSearchIndex(c.vim)
	for _, n := range s.NodeVMs() {
		if !strings.HasPrefix(n.Name, "k8s-node-") || n.UUID != strings.ToLower(n.UUID) || len(n.UUID) != 36 {
			t.Errorf("node VM %+v: bad name or uuid", n)
		}
		ref, err := si.FindByUuid(ctx, dc, n.UUID, true, nil)
		if err != nil || ref == nil || ref.Reference().Value != n.Ref {
			t.Errorf("FindByUuid(%s) = %v, %v; want %s", n.UUID, ref, err, n.Ref)
		}
		if fi, err := os.Stat(n.ByIDDir); err != nil || !fi.IsDir() {
			t.Errorf("by-id dir %s: %v", n.ByIDDir, err)
		}
	}
	for _, vm := range vms {
		hosts[*vm.Runtime.Host] = true
	}
	if len(hosts) != 3 {
		t.Errorf("node VMs run on %d hosts, want 3", len(hosts))
	}

	// Deterministic UUIDs.
	s2 := startSim(t, Options{})
	if s.NodeVMs()[0].UUID != s2.NodeVMs()[0].UUID {
		t.Errorf("node UUIDs differ between runs")
	}

	// Datastores: finite, different sizes, shared or not, url form.
	// The node VMs' OS disks (DefaultNodeVMs of them) live on vsanDatastore.
	want := map[string]struct {
		size, free int64
		hosts      int
	}{
		"vsanDatastore": {2 << 40, 2<<40 - DefaultNodeVMs*osDiskKB*1024, 3}, "nfs-gold": {500 << 30, 500 << 30, 3},
		"silver-ds": {1 << 40, 1 << 40, 3}, "local-ds-0": {200 << 30, 200 << 30, 1},
		"zone-b-ds": {1 << 40, 1 << 40, 2}, // zone B's own (inventory_tags.go)
	}
	var dss []mo.Datastore
	dsList, err := finder.DatastoreList(ctx, "*")
	if err != nil {
		t.Fatal(err)
	}
	var dsRefs []types.ManagedObjectReference
	for _, d := range dsList {
		dsRefs = append(dsRefs, d.Reference())
	}
	if err := property.DefaultCollector(c.vim).Retrieve(ctx, dsRefs, []string{"summary", "host"}, &dss); err != nil {
		t.Fatal(err)
	}
	if len(dss) != len(want) {
		t.Fatalf("%d datastores, want %d", len(dss), len(want))
	}
	for _, d := range dss {
		w, ok := want[d.Summary.Name]
		if !ok {
			t.Errorf("unexpected datastore %s", d.Summary.Name)
			continue
		}
		if d.Summary.Capacity != w.size || d.Summary.FreeSpace != w.free || len(d.Host) != w.hosts {
			t.Errorf("%s: capacity %d free %d hosts %d; want %d, %d, %d", d.Summary.Name, d.Summary.Capacity, d.Summary.FreeSpace, len(d.Host), w.size, w.free, w.hosts)
		}
		if !strings.Contains(d.Summary.Url, "/vmfs/volumes/") || !strings.HasSuffix(d.Summary.Url, "/") {
			t.Errorf("%s: url %s", d.Summary.Name, d.Summary.Url)
		}
		if info := dsInfo(t, s, d.Summary.Name); info.URL != d.Summary.Url {
			t.Errorf("%s: Datastores().URL %s != summary.url %s", d.Summary.Name, info.URL, d.Summary.Url)
		}
	}
	if !strings.Contains(s.Summary(), "k8s-node-3") || !strings.Contains(s.Summary(), "Gold") {
		t.Errorf("summary lacks nodes or policies:\n%s", s.Summary())
	}
}

func TestConfigINI(t *testing.T) {
	s := startSim(t, Options{})
	path := filepath.Join(t.TempDir(), "csi-vsphere.conf")
	if err := s.WriteConfig(path, "demo-cluster", false); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ini := string(b)
	for _, want := range []string{
		`cluster-id = "demo-cluster"`,
		`[VirtualCenter "127.0.0.1"]`,
		`user = "administrator@vsphere.local"`,
		`datacenters = "DC0"`,
		`thumbprint = "` + s.Thumbprint() + `"`,
	} {
		if !strings.Contains(ini, want) {
			t.Errorf("config lacks %q:\n%s", want, ini)
		}
	}
	if strings.Contains(ini, "insecure") {
		t.Errorf("config must not be insecure:\n%s", ini)
	}
	if len(s.Thumbprint()) != 59 {
		t.Errorf("thumbprint %q is not SHA-1 AA:BB form", s.Thumbprint())
	}
	if strings.Contains(ini, "[Labels]") {
		t.Errorf("config without topology names topology categories:\n%s", ini)
	}
	zoned := s.ConfigINI("demo-cluster", true)
	if want := "[Labels]\ntopology-categories = \"" + TopologyCategories + "\"\n"; !strings.Contains(zoned, want) {
		t.Errorf("config with topology lacks %q:\n%s", want, zoned)
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	s := startSim(t, Options{Password: "right"})
	ctx := context.Background()
	u, _ := url.Parse(s.URL())
	sc := soap.NewClient(u, false)
	sc.SetThumbprint(u.Host, s.Thumbprint())
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	if err := session.NewManager(vc).Login(ctx, url.UserPassword(s.Username(), "wrong")); err == nil {
		t.Errorf("login with a wrong password succeeded")
	}
	if err := session.NewManager(vc).Login(ctx, url.UserPassword(s.Username(), "right")); err != nil {
		t.Errorf("login with the right password: %v", err)
	}
	// A client that does not know the thumbprint must not connect.
	strict := soap.NewClient(u, false)
	if _, err := vim25.NewClient(ctx, strict); err == nil {
		t.Errorf("TLS without the thumbprint was accepted")
	}
}

func TestThirtyNodeVMs(t *testing.T) {
	s := startSim(t, Options{NodeVMs: 30})
	nodes := s.NodeVMs()
	if len(nodes) != 30 {
		t.Fatalf("%d node VMs, want 30", len(nodes))
	}
	seen := map[string]bool{}
	perHost := map[string]int{}
	for _, n := range nodes {
		if seen[n.UUID] {
			t.Errorf("duplicate UUID %s", n.UUID)
		}
		seen[n.UUID] = true
		perHost[n.Host]++
	}
	if len(perHost) != 3 || perHost["DC0_C0_H0"] != 10 {
		t.Errorf("node VMs per host %v, want 10 on each of 3", perHost)
	}
	c := connect(t, s)
	id := mustCreate(t, c, createSpec("n30", 16, "", dsRef(t, s, "silver-ds")))
	if _, f := attach(t, c, id, vmRef(nodes[29])); f != nil {
		t.Errorf("attach to node 30: %s", f.LocalizedMessage)
	}
}

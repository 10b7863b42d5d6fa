package sim

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/cns"
	cnstypes "github.com/vmware/govmomi/cns/types"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// killWorkloadEnv makes the test binary, run by TestKilledWhileWriting,
// run an embedded vCenter on that dir and keep changing its state until
// it is killed.
const killWorkloadEnv = "VSPHERE_SIM_KILL_WORKLOAD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(killWorkloadEnv); dir != "" {
		if err := killWorkload(dir); err != nil {
			fmt.Fprintln(os.Stderr, "workload:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// killWorkload starts a vCenter on dir (failing if the kept state does not
// load) and creates, attaches, snapshots, extends, detaches and deletes
// volumes as fast as it can, forever.
func killWorkload(dir string) error {
	ctx := context.Background()
	s, err := Start(ctx, Options{Dir: dir, NodeVMs: 2})
	if err != nil {
		return fmt.Errorf("start on the kept dir: %w", err)
	}
	u, _ := url.Parse(s.URL())
	sc := soap.NewClient(u, false)
	sc.SetThumbprint(u.Host, s.Thumbprint())
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return err
	}
	if err := session.NewManager(vc).Login(ctx, url.UserPassword(s.Username(), s.Password())); err != nil {
		return err
	}
	c, err := cns.NewClient(ctx, vc)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	vm := types.ManagedObjectReference{Type: "VirtualMachine", Value: s.NodeVMs()[0].Ref}
	for i := 0; ; i++ {
		name := fmt.Sprintf("k-%d-%d", os.Getpid(), i)
		task, err := c.CreateVolume(ctx, []cnstypes.CnsVolumeCreateSpec{createSpec(name, 8, "")})
		if err != nil {
			return err
		}
		info, err := cns.GetTaskInfo(ctx, task)
		if err != nil {
			return err
		}
		res, err := cns.GetTaskResult(ctx, info)
		if err != nil {
			return err
		}
		id := cnstypes.CnsVolumeId{Id: res.GetCnsVolumeOperationResult().VolumeId.Id}
		spec := []cnstypes.CnsVolumeAttachDetachSpec{{VolumeId: id, Vm: vm}}
		attach := func() (*object.Task, error) { return c.AttachVolume(ctx, spec) }
		detach := func() (*object.Task, error) { return c.DetachVolume(ctx, spec) }
		steps := []func() (*object.Task, error){attach, func() (*object.Task, error) {
			return c.CreateSnapshots(ctx, []cnstypes.CnsSnapshotCreateSpec{{VolumeId: id, Description: "s"}})
		}, detach}
		if i%2 == 0 { // every other volume goes again, after being grown
			steps = []func() (*object.Task, error){attach, detach, func() (*object.Task, error) {
				return c.ExtendVolume(ctx, []cnstypes.CnsVolumeExtendSpec{{VolumeId: id, CapacityInMb: 16}})
			}, func() (*object.Task, error) {
				return c.DeleteVolume(ctx, []cnstypes.CnsVolumeId{id}, true)
			}}
		}
		for _, step := range steps {
			task, err := step()
			if err != nil {
				return err
			}
			if _, err := cns.GetTaskInfo(ctx, task); err != nil {
				return err
			}
		}
	}
}

// TestKilledWhileWriting: the embedded vCenter killed (SIGKILL) at any
// moment while it changes its state, 20 times in a row on one dir, always
// starts again, and what it kept is consistent: every volume's data file
// is there, every attachment is on its VM, every snapshot's file is there,
// and the datastores' free space adds up.
func TestKilledWhileWriting(t *testing.T) {
	skipShort(t, "starts the embedded vCenter")
	dir := t.TempDir()
	for i := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), killWorkloadEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if sc.Text() == "ready" {
					ready <- true
					return
				}
			}
			ready <- false
		}()
		select {
		case ok := <-ready:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("run %d did not start on the kept dir: %s", i, lastLines(stderr.String(), 5))
			}
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			t.Fatalf("run %d: not ready in a minute", i)
		}
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond) //nolint:gosec
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}

	s := startSim(t, Options{Dir: dir})
	if s.repairs != 0 {
		t.Errorf("%d kept records needed repair", s.repairs)
	}
	c := connect(t, s)
	res, err := c.cns.QueryVolume(context.Background(), &cnstypes.CnsQueryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Volumes) == 0 {
		t.Fatal("20 runs kept no volume at all")
	}
	used := map[string]int64{}
	for _, v := range res.Volumes {
		id := v.VolumeId.Id
		rec, _ := s.cns.snapshot(id)
		if st, err := os.Stat(rec.flatFile); err != nil || st.Size() != rec.sizeMB*mib {
			t.Errorf("volume %s: data file %v (size %d, want %d)", id, err, sizeOf(st), rec.sizeMB*mib)
		}
		used[rec.ds.name] += rec.sizeMB * mib
		if rec.vm != nil {
			if disks := vmDisksWithID(t, c, *rec.vm, id); disks != 1 {
				t.Errorf("volume %s attached to %s, but the VM has %d disks of it", id, rec.vm.Value, disks)
			}
		}
		for _, snap := range s.cns.snaps[id] {
			if _, err := os.Stat(snap.file); err != nil {
				t.Errorf("snapshot %s of %s: %v", snap.cns.SnapshotId.Id, id, err)
			}
		}
	}
	for _, d := range s.Datastores() {
		ds := s.inv.dsByName[d.Name]
		if want := d.CapacityBytes - used[d.Name] - osDiskUse(s, ds); d.FreeBytes != want {
			t.Errorf("datastore %s: %d free, the kept volumes leave %d", d.Name, d.FreeBytes, want)
		}
	}
	t.Logf("after 20 kills: %d volumes kept", len(res.Volumes))
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return -1
	}
	return st.Size()
}

// vmDisksWithID counts the VM's disks backed by the first-class disk id.
func vmDisksWithID(t *testing.T, c *clients, vm types.ManagedObjectReference, id string) int {
	n := 0
	for _, d := range vmDisks(t, c, vm) {
		if d.VDiskId != nil && d.VDiskId.Id == id {
			n++
		}
	}
	return n
}

// osDiskUse is what the node VMs' OS disks take on a datastore.
func osDiskUse(s *Sim, d *dsModel) int64 {
	var n int64
	for _, vm := range s.inv.nodes {
		home := "vsanDatastore"
		if vm.zone == ZoneB {
			home = zoneBDatastores[0].name
		}
		if home == d.name && !vm.deleted.get() {
			n += osDiskKB * 1024
		}
	}
	return n
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

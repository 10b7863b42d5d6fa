package node_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vsphere-cns/vsphere-csi/pkg/node"
	"github.com/vsphere-cns/vsphere-csi/pkg/node/nodetest"
)

// hungSystem is the fake's system where the calls on the paths in hung
// block, as they do in the kernel on a hard NFS mount whose server is
// gone, until release is closed; a lazy unmount never blocks.
type hungSystem struct {
	node.System
	hung    map[string]bool
	release chan struct{}
	started atomic.Int32 // blocking calls started
}

func (s *hungSystem) block(path string) {
	if s.hung[path] {
		s.started.Add(1)
		<-s.release
	}
}

func (s *hungSystem) Statfs(path string) (node.FSStats, error) {
	s.block(path)
	return node.FSStats{TotalBytes: 1 << 30}, nil
}

func (s *hungSystem) Unmount(path string, flags int) error {
	if flags&unix.MNT_DETACH == 0 {
		s.block(path)
	}
	return s.System.Unmount(path, flags)
}

// TestHungCallsBounded: statfs calls on a path whose filesystem does not
// answer return node.ErrNotResponding instead of hanging, and however many are
// asked for, one is left waiting; another path is not held up; an NFS
// unmount ends (lazily) all the same; when the filesystem answers again,
// the next call does too.
func TestHungCallsBounded(t *testing.T) {
	sys := &hungSystem{release: make(chan struct{})}
	m := nodetest.NewFakeWith(t.TempDir(), nodetest.FakeOptions{
		Mounter:    node.Options{CallWait: 20 * time.Millisecond},
		WrapSystem: func(fs node.System) node.System { sys.System = fs; return sys },
	})
	share, local := filepath.Join(t.TempDir(), "share"), t.TempDir()
	if err := os.Mkdir(share, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := m.Mounts.Mount("10.0.0.1:/vsanfs/a", share, "nfs4", nil); err != nil {
		t.Fatal(err)
	}
	sys.hung = map[string]bool{share: true}
	ctx := context.Background()

	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.FilesystemStats(ctx, share); !errors.Is(err, node.ErrNotResponding) {
				t.Errorf("statfs of the hung share: %v, want node.ErrNotResponding", err)
			}
		}()
	}
	wg.Wait()
	for range 50 {
		if _, err := m.FilesystemStats(ctx, share); !errors.Is(err, node.ErrNotResponding) {
			t.Fatalf("statfs of the hung share: %v, want node.ErrNotResponding", err)
		}
	}
	if n := sys.started.Load(); n != 1 {
		t.Errorf("%d statfs calls of the hung share started for 100 asked; want 1", n)
	}
	if st, err := m.FilesystemStats(ctx, local); err != nil || st.TotalBytes == 0 {
		t.Errorf("statfs of another path while the share hangs: %+v, %v", st, err)
	}

	// The unmount: the plain and the forced one hang, the lazy one ends it.
	if err := m.UnmountNFS(ctx, share, true); err != nil {
		t.Fatalf("UnmountNFS of the hung share: %v", err)
	}
	if e, _ := m.MountEntry(share); e.Mounted {
		t.Error("still mounted after UnmountNFS")
	}
	if _, err := os.Stat(share); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the target after UnmountNFS: %v", err)
	}
	if n := sys.started.Load(); n != 3 {
		t.Errorf("%d blocking calls started; want 3 (statfs, umount, umount -f)", n)
	}

	close(sys.release) // the server is back: the stuck calls return
	for node.StuckCalls(m.Mounter) > 0 {
		time.Sleep(time.Millisecond)
	}
	if err := os.Mkdir(share, 0o750); err != nil {
		t.Fatal(err)
	}
	if st, err := m.FilesystemStats(ctx, share); err != nil || st.TotalBytes != 1<<30 {
		t.Errorf("statfs once the server answers: %+v, %v", st, err)
	}
}

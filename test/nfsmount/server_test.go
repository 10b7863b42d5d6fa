package nfsmount

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	billy "github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/osfs"
	nfs "github.com/willscott/go-nfs"
	nfshelper "github.com/willscott/go-nfs/helpers"
)

// An in-process NFSv3 server (go-nfs) for the tests: it exports a
// temporary directory as /export, refuses /denied (MNT3ERR_ACCES) and
// knows no other export (MNT3ERR_NOENT). It can be paused (it stops
// reading requests: a server that stopped answering) and stopped (its
// connections closed, new ones refused).

func init() { nfs.Log.SetLevel(nfs.FatalLevel) }

type testServer struct {
	dir  string // the directory exported as /export
	port int
	gate *gate
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{Listener: ln}
	g.cond = sync.NewCond(&g.mu)
	h := nfshelper.NewCachingHandler(&exportHandler{
		Handler: nfshelper.NewNullAuthHandler(changeFS{osfs.New(dir)}),
	}, 4096)
	go func() { _ = nfs.Serve(g, h) }()
	t.Cleanup(g.stop)
	return &testServer{dir: dir, port: ln.Addr().(*net.TCPAddr).Port, gate: g}
}

// exportHandler decides mounts by path.
type exportHandler struct{ nfs.Handler }

func (h *exportHandler) Mount(ctx context.Context, c net.Conn, req nfs.MountRequest) (nfs.MountStatus, billy.Filesystem, []nfs.AuthFlavor) {
	flavors := []nfs.AuthFlavor{nfs.AuthFlavorNull, nfs.AuthFlavorUnix}
	switch string(req.Dirpath) {
	case "/export":
		st, fs, _ := h.Handler.Mount(ctx, c, req)
		return st, fs, flavors
	case "/denied":
		return nfs.MountStatusErrAcces, memfs.New(), flavors
	}
	// go-nfs wants a file system even for a refusal.
	return nfs.MountStatusErrNoEnt, memfs.New(), flavors
}

// changeFS is an osfs with attribute changes.
type changeFS struct{ billy.Filesystem }

func (c changeFS) path(name string) string                { return filepath.Join(c.Root(), name) }
func (c changeFS) Chmod(name string, m os.FileMode) error { return os.Chmod(c.path(name), m) }
func (c changeFS) Lchown(name string, uid, gid int) error { return os.Lchown(c.path(name), uid, gid) }
func (c changeFS) Chown(name string, uid, gid int) error  { return os.Chown(c.path(name), uid, gid) }
func (c changeFS) Chtimes(name string, a, m time.Time) error {
	return os.Chtimes(c.path(name), a, m)
}

// gate is a listener whose connections can be paused and closed.
type gate struct {
	net.Listener
	mu      sync.Mutex
	cond    *sync.Cond
	paused  bool
	stopped bool
	conns   []net.Conn
}

func (g *gate) Accept() (net.Conn, error) {
	c, err := g.Listener.Accept()
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	g.conns = append(g.conns, c)
	return &gatedConn{Conn: c, g: g}, nil
}

func (g *gate) setPaused(p bool) {
	g.mu.Lock()
	g.paused = p
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (g *gate) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	g.stopped = true
	g.cond.Broadcast()
	_ = g.Listener.Close()
	for _, c := range g.conns {
		_ = c.Close()
	}
}

type gatedConn struct {
	net.Conn
	g *gate
}

func (c *gatedConn) Read(p []byte) (int, error) {
	c.g.mu.Lock()
	for c.g.paused && !c.g.stopped {
		c.g.cond.Wait()
	}
	stopped := c.g.stopped
	c.g.mu.Unlock()
	if stopped {
		return 0, errors.New("server stopped")
	}
	return c.Conn.Read(p)
}

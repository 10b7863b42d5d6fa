package sim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"strings"

	billy "github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/osfs"
	nfs "github.com/willscott/go-nfs"
	nfshelper "github.com/willscott/go-nfs/helpers"
	"k8s.io/klog/v2"

	vsanfstypes "github.com/vmware/govmomi/vsan/vsanfs/types"
)

// The embedded vCenter's NFS server: what vSAN File Service's file
// servers are to a real one. It serves each file share's directory at
// /vsanfs/<share> on an address of its own, port 2049, and decides each
// mount by the client's address and the share's net permissions (the
// first that matches, in their order): NO_ACCESS (or none matching) is
// refused, READ_ONLY gets a read-only share. It speaks NFSv3
// (github.com/willscott/go-nfs); the access points name NFSv3 and NFSv4.1
// as vSAN does, both at this address. Each call acts for its caller, with
// root squash where the client's net permission does not allow root
// (nfs_auth.go, nfs_fs.go).

// nfsPort is where NFS clients look (a mount names no port).
const nfsPort = 2049

type nfsServer struct {
	addr   string // the server's IP address, "" when not serving
	ln     net.Listener
	m      *volumeManager
	outage nfsOutage  // HangNFS, RestartNFS (nfs_outage.go)
	caller *nfsCaller // who the call being handled is from (nfs_auth.go)
}

// startNFS serves NFS on port 2049 of the address given (fixed: when it
// is taken or not this machine's, no NFS), or else of a loopback address
// of its own (127.x.y.z), so that several embedded vCenters on one machine
// each have theirs: the address it had before a restart (keep) when it is
// free, so the access points CNS reported stay true, else a new one. Not
// root (port 2049 is privileged): no NFS, and file volumes can't be
// mounted, which only root could do anyway.
func startNFS(m *volumeManager, fixed, keep string) *nfsServer {
	s := &nfsServer{m: m, caller: newNFSCaller()}
	var err error
	tries := 64
	if fixed != "" {
		tries = 1
	}
	for i := range tries {
		ip := fixed
		switch {
		case fixed != "":
		case i == 0 && keep != "":
			ip = keep
		default:
			ip = fmt.Sprintf("127.%d.%d.%d", 64+rand.IntN(128), rand.IntN(256), 1+rand.IntN(254)) //nolint:gosec
		}
		s.ln, err = net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(nfsPort)))
		if err == nil {
			s.addr = ip
			break
		}
		if errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "permission denied") {
			break
		}
	}
	if s.addr == "" {
		klog.InfoS("vCenter simulator: no NFS server (file volumes can't be mounted)", "err", err)
		return s
	}
	handler := nfshelper.NewCachingHandler(&shareHandler{m: m, caller: s.caller}, 1<<16)
	go func() {
		if err := nfs.Serve(credListener{Listener: s.outage.listener(s.ln), caller: s.caller}, handler); err != nil && !errors.Is(err, net.ErrClosed) {
			klog.V(2).InfoS("vCenter simulator: NFS server stopped", "err", err)
		}
	}()
	klog.InfoS("vCenter simulator: vSAN File Service's NFS server", "address", net.JoinHostPort(s.addr, fmt.Sprint(nfsPort)))
	return s
}

func (s *nfsServer) close() {
	if s != nil && s.ln != nil {
		_ = s.ln.Close()
		if s.outage.isHung() { // no connection stays hung for good
			s.outage.restart()
		}
	}
}

// shareHandler answers MOUNT requests from the file shares.
type shareHandler struct {
	m      *volumeManager
	caller *nfsCaller
}

// who is the user a call to the share is served as: its caller, root
// squashed unless the first net permission matching the client allows
// root. The share's permissions are read at each call: a change applies to
// the clients that have it mounted, as on an NFS server.
func (h *shareHandler) who(name string) func() nfsUser {
	return func() nfsUser {
		cr := h.caller.current()
		sh, ok := h.m.shareNamed(name)
		allowRoot := false
		if ok {
			if p, found := matchPermission(sh.perms, cr.client); found {
				allowRoot = p.AllowRoot
			}
		}
		return effective(cr, allowRoot)
	}
}

func (h *shareHandler) Mount(_ context.Context, conn net.Conn, req nfs.MountRequest) (nfs.MountStatus, billy.Filesystem, []nfs.AuthFlavor) {
	flavors := []nfs.AuthFlavor{nfs.AuthFlavorNull, nfs.AuthFlavorUnix}
	// An unknown export gets an error and a filesystem all the same: the
	// NFS library expects one.
	refuse := func(st nfs.MountStatus) (nfs.MountStatus, billy.Filesystem, []nfs.AuthFlavor) {
		return st, memfs.New(), flavors
	}
	name, ok := strings.CutPrefix(strings.TrimSuffix(string(req.Dirpath), "/"), "/vsanfs/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return refuse(nfs.MountStatusErrNoEnt)
	}
	sh, ok := h.m.shareNamed(name)
	if !ok {
		return refuse(nfs.MountStatusErrNoEnt)
	}
	client := ""
	if a, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		client = a.IP.String()
	}
	access := decideAccess(sh.perms, client)
	klog.V(2).InfoS("vCenter simulator: NFS mount", "share", name, "client", client, "access", access)
	switch access {
	case vsanfstypes.VsanFileShareAccessTypeREAD_WRITE:
		return nfs.MountStatusOk, shareFS{Filesystem: osfs.New(sh.dir), who: h.who(name)}, flavors
	case vsanfstypes.VsanFileShareAccessTypeREAD_ONLY:
		return nfs.MountStatusOk, readOnlyFS{shareFS{Filesystem: osfs.New(sh.dir), who: h.who(name)}}, flavors
	}
	return refuse(nfs.MountStatusErrAcces)
}

// decideAccess is the access of the first permission whose ips match the
// client's address (NO_ACCESS when none does).
func decideAccess(perms []vsanfstypes.VsanFileShareNetPermission, client string) vsanfstypes.VsanFileShareAccessType {
	if p, ok := matchPermission(perms, client); ok {
		return p.Permissions
	}
	return vsanfstypes.VsanFileShareAccessTypeNO_ACCESS
}

// matchPermission is the first permission whose ips match the client's
// address.
func matchPermission(perms []vsanfstypes.VsanFileShareNetPermission, client string) (vsanfstypes.VsanFileShareNetPermission, bool) {
	ip := net.ParseIP(client)
	for _, p := range perms {
		if ipsMatch(p.Ips, ip) {
			return p, true
		}
	}
	return vsanfstypes.VsanFileShareNetPermission{}, false
}

// ipsMatch: ips is "*", or a comma-separated list of addresses and
// networks (CIDR), as vSAN takes them.
func ipsMatch(ips string, ip net.IP) bool {
	if strings.TrimSpace(ips) == "*" {
		return true
	}
	if ip == nil {
		return false
	}
	for _, one := range strings.Split(ips, ",") {
		one = strings.TrimSpace(one)
		if _, n, err := net.ParseCIDR(one); err == nil && n.Contains(ip) {
			return true
		}
		if net.ParseIP(one).Equal(ip) {
			return true
		}
	}
	return false
}

// validIPs says whether ips is something ipsMatch understands.
func validIPs(ips string) bool {
	if strings.TrimSpace(ips) == "*" {
		return true
	}
	for _, one := range strings.Split(ips, ",") {
		one = strings.TrimSpace(one)
		if _, _, err := net.ParseCIDR(one); err != nil && net.ParseIP(one) == nil {
			return false
		}
	}
	return true
}

func (h *shareHandler) Change(fs billy.Filesystem) billy.Change {
	if c, ok := fs.(billy.Change); ok {
		return c
	}
	return nil // read-only
}

// FSStat reports the share's soft quota as its size: what df shows on a
// vSAN file share.
func (h *shareHandler) FSStat(_ context.Context, f billy.Filesystem, s *nfs.FSStat) error {
	_, sizeMB, ok := h.m.shareByDir(f.Root())
	if !ok {
		return &fs.PathError{Op: "fsstat", Path: f.Root(), Err: fs.ErrNotExist}
	}
	total := uint64(sizeMB * mib)       //nolint:gosec // positive
	used := uint64(usedBytes(f.Root())) //nolint:gosec // positive
	free := total - min(used, total)
	s.TotalSize, s.FreeSize, s.AvailableSize = total, free, free
	s.TotalFiles, s.FreeFiles, s.AvailableFiles = 1<<20, 1<<20, 1<<20
	return nil
}

// The handles are the caching handler's.
func (h *shareHandler) ToHandle(billy.Filesystem, []string) []byte { return nil }
func (h *shareHandler) FromHandle([]byte) (billy.Filesystem, []string, error) {
	return nil, nil, nil
}
func (h *shareHandler) InvalidateHandle(billy.Filesystem, []byte) error { return nil }
func (h *shareHandler) HandleLimit() int                                { return -1 }

// readOnlyFS refuses every change (a READ_ONLY net permission).
type readOnlyFS struct{ billy.Filesystem }

var errReadOnly = &fs.PathError{Op: "write", Err: fs.ErrPermission}

func (r readOnlyFS) Create(string) (billy.File, error) { return nil, errReadOnly }
func (r readOnlyFS) OpenFile(name string, flag int, perm os.FileMode) (billy.File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0 {
		return nil, errReadOnly
	}
	return r.Filesystem.OpenFile(name, flag, perm)
}
func (r readOnlyFS) Rename(string, string) error                 { return errReadOnly }
func (r readOnlyFS) Remove(string) error                         { return errReadOnly }
func (r readOnlyFS) MkdirAll(string, os.FileMode) error          { return errReadOnly }
func (r readOnlyFS) Symlink(string, string) error                { return errReadOnly }
func (r readOnlyFS) TempFile(string, string) (billy.File, error) { return nil, errReadOnly }

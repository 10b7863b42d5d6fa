package nfsmount

import (
	"bytes"
	"context"
	"errors"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
)

// CallTimeout bounds every NFS call, the (re)connection it may need
// included: a server that stopped answering fails the call with EIO
// instead of hanging the FUSE request. The helper reads it from the
// environment variable NFSMOUNT_TIMEOUT (a Go duration) when set, so
// tests can lower it for the daemon too.
var CallTimeout = 30 * time.Second

const (
	mountProg = 100005
	nfsProg   = 100003
	vers3     = 3

	maxIO = 1 << 20 // largest READ or WRITE sent, whatever FSINFO allows
)

// NFSv3 procedures (RFC 1813).
const (
	procGetattr     = 1
	procSetattr     = 2
	procLookup      = 3
	procAccess      = 4
	procReadlink    = 5
	procRead        = 6
	procWrite       = 7
	procCreate      = 8
	procMkdir       = 9
	procSymlink     = 10
	procRemove      = 12
	procRmdir       = 13
	procRename      = 14
	procLink        = 15
	procReaddirplus = 17
	procFsstat      = 18
	procFsinfo      = 19
	procCommit      = 21
)

// session is the client side of one NFS mount: a connection to the
// server, re-dialed and re-mounted on the next call after it breaks.
type session struct {
	nfsAddr   string // host:port of the NFS program
	mountAddr string // host:port of the MOUNT program (usually the same)
	path      string // the export
	machine   string // AUTH_UNIX machine name

	connecting chan struct{} // a 1-slot lock, held while (re)connecting

	// hard: a call the server does not answer is sent again, for as
	// long as it takes, as a kernel hard mount does (hardMount); set once
	// the share is mounted, before the first FUSE request.
	hard atomic.Bool
	done chan struct{} // closed by close: hard calls give up
	// fuseGone says whether the kernel ended the FUSE connection (a
	// forced unmount aborts it): hard calls give up (nil until mounted).
	fuseGone atomic.Pointer[func() bool]

	mu     sync.Mutex
	conn   *rpcConn
	root   []byte // the export's root handle from the last MNT
	rtmax  uint32
	wtmax  uint32
	closed bool
	stuck  int // hard calls waiting for the server now (for the log)
}

func newSession(nfsAddr, mountAddr, path string) *session {
	host, _ := os.Hostname()
	return &session{
		nfsAddr: nfsAddr, mountAddr: mountAddr, path: path, machine: host,
		connecting: make(chan struct{}, 1),
		done:       make(chan struct{}),
		rtmax:      64 << 10, wtmax: 64 << 10,
	}
}

// rootHandle is the export's root handle.
func (s *session) rootHandle() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.root
}

// connection returns a live connection, dialing and mounting anew when
// the last one broke.
func (s *session) connection(ctx context.Context) (*rpcConn, error) {
	select {
	case s.connecting <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.connecting }()

	s.mu.Lock()
	c, closed := s.conn, s.closed
	s.mu.Unlock()
	if closed {
		return nil, errSessionClosed
	}
	if c != nil && c.alive() {
		return c, nil
	}
	c, err := dialRPC(ctx, s.nfsAddr)
	if err != nil {
		return nil, err
	}
	mc := c
	if s.mountAddr != s.nfsAddr {
		if mc, err = dialRPC(ctx, s.mountAddr); err != nil {
			c.close()
			return nil, err
		}
		defer mc.close()
	}
	root, err := mnt(ctx, mc, s.path, s.authUnix(0, 0))
	if err != nil {
		c.close()
		return nil, err
	}
	s.mu.Lock()
	s.conn, s.root = c, root
	s.mu.Unlock()
	return c, nil
}

// start connects and mounts the export for the first time, and reads the
// server's transfer sizes.
func (s *session) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	if _, err := s.connection(ctx); err != nil {
		return err
	}
	info, err := s.fsinfo(ctx, s.rootHandle())
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if info.RTMax > 0 {
		s.rtmax = min(info.RTMax, maxIO)
	}
	if info.WTMax > 0 {
		s.wtmax = min(info.WTMax, maxIO)
	}
	return nil
}

// close unmounts the export at the server (best effort, briefly) and
// closes the connection; later calls fail.
func (s *session) close() {
	s.mu.Lock()
	c := s.conn
	if !s.closed {
		close(s.done)
	}
	s.closed = true
	s.mu.Unlock()
	if c == nil {
		return
	}
	if c.alive() && s.mountAddr == s.nfsAddr {
		ctx, cancel := context.WithTimeout(context.Background(), min(CallTimeout, 2*time.Second))
		_, _ = c.call(ctx, mountProg, vers3, 3 /* UMNT */, s.authUnix(0, 0), s.path)
		cancel()
	}
	c.close()
}

// authUnix is an AUTH_UNIX credential (RFC 5531, appendix A).
func (s *session) authUnix(uid, gid uint32) rpc.Auth {
	var b bytes.Buffer
	_ = xdr.Write(&b, struct {
		Stamp    uint32
		Machine  string
		UID, GID uint32
		GIDs     []uint32
	}{uint32(time.Now().Unix()), s.machine, uid, gid, []uint32{gid}})
	return rpc.Auth{Flavor: 1, Body: b.Bytes()}
}

// mnt asks the MOUNT program for the export's root handle.
func mnt(ctx context.Context, c *rpcConn, path string, cred rpc.Auth) ([]byte, error) {
	r, err := c.call(ctx, mountProg, vers3, 1 /* MNT */, cred, path)
	if err != nil {
		return nil, err
	}
	st, err := xdr.ReadUint32(r)
	if err != nil {
		return nil, err
	}
	if st != 0 {
		return nil, mountStatus(st)
	}
	return xdr.ReadOpaque(r)
}

// call runs one NFSv3 procedure with the FUSE caller's uid and gid as
// AUTH_UNIX credential. It returns the results after the status, or the
// status as an nfsStatus error. Each attempt is bounded by CallTimeout; on
// a soft mount (the default) a server that does not answer in time fails
// the call, on a hard one (hardMount) the call is sent again until the
// server answers or the share is unmounted.
func (s *session) call(ctx context.Context, proc uint32, args any) (*bytes.Reader, error) {
	if !s.hard.Load() {
		r, _, err := s.callOnce(ctx, proc, args)
		return r, err
	}
	// As the kernel's hard mounts (nointr, since Linux 2.6.25): a signal
	// to the caller does not end the call; only the share's unmount does
	// (umount -f aborts the FUSE connection, and with it this daemon).
	ctx = context.WithoutCancel(ctx)
	waited := false
	defer func() {
		if waited {
			s.notResponding(-1)
		}
	}()
	for pause := 100 * time.Millisecond; ; pause = min(2*pause, 2*time.Second) {
		r, transport, err := s.callOnce(ctx, proc, args)
		if err == nil || !transport {
			return r, err
		}
		if !waited {
			waited = true
			s.notResponding(1)
		}
		select {
		case <-s.done:
			return nil, err
		case <-time.After(pause):
		}
		if gone := s.fuseGone.Load(); gone != nil && (*gone)() {
			return nil, errFUSEGone
		}
	}
}

// notResponding counts the hard calls waiting for the server and logs,
// as the kernel does, when the first starts waiting and the last is done.
func (s *session) notResponding(delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stuck += delta
	switch {
	case delta > 0 && s.stuck == 1:
		log.Printf("nfs: server %s not responding, still trying", s.nfsAddr)
	case delta < 0 && s.stuck == 0:
		log.Printf("nfs: server %s OK", s.nfsAddr)
	}
}

// callOnce is one attempt of call, bounded by CallTimeout; transport says
// the error is the connection's or the server's silence, not an answer.
func (s *session) callOnce(ctx context.Context, proc uint32, args any) (_ *bytes.Reader, transport bool, _ error) {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	c, err := s.connection(ctx)
	if err != nil {
		var ms mountStatus
		return nil, !errors.As(err, &ms) && !errors.Is(err, errSessionClosed), err
	}
	var uid, gid uint32
	if caller, ok := fuse.FromContext(ctx); ok {
		uid, gid = caller.Uid, caller.Gid
	}
	r, err := c.call(ctx, nfsProg, vers3, proc, s.authUnix(uid, gid), args)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			// No answer in time: drop the connection, the next call
			// dials anew instead of queueing behind this one.
			c.fail(errTimeout)
		}
		var re *rpcError
		return nil, !errors.As(err, &re), err
	}
	st, err := xdr.ReadUint32(r)
	if err != nil {
		return nil, false, err
	}
	if st != 0 {
		return nil, false, nfsStatus(st)
	}
	return r, false, nil
}

var errTimeout = errors.New("NFS server not responding")

// errFUSEGone: the kernel ended the FUSE connection; nobody waits for
// the answer any more.
var errFUSEGone = errors.New("FUSE connection aborted")

// errSessionClosed: the share was unmounted.
var errSessionClosed = errors.New("share unmounted")

// decode runs a procedure and decodes its results into res (nil: none).
func (s *session) decode(ctx context.Context, proc uint32, args, res any) error {
	r, err := s.call(ctx, proc, args)
	if err != nil || res == nil {
		return err
	}
	return xdr.Read(r, res)
}

type diropargs struct {
	Dir  []byte
	Name string
}

// newObj is the result of CREATE, MKDIR and SYMLINK.
type newObj struct {
	FH   nfs.PostOpFH3
	Attr nfs.PostOpAttr
}

func (s *session) getattr(ctx context.Context, fh []byte) (*nfs.Fattr, error) {
	var a nfs.Fattr
	return &a, s.decode(ctx, procGetattr, fh, &a)
}

// setattr changes attributes and returns the new ones if the server sent
// them (nil otherwise).
func (s *session) setattr(ctx context.Context, fh []byte, sa nfs.Sattr3) (*nfs.Fattr, error) {
	args := struct {
		FH    []byte
		Attr  nfs.Sattr3
		Guard bool // no ctime guard
	}{fh, sa, false}
	var res nfs.WccData
	if err := s.decode(ctx, procSetattr, args, &res); err != nil {
		return nil, err
	}
	if res.After.IsSet {
		return &res.After.Attr, nil
	}
	return nil, nil
}

// lookup returns a name's handle and attributes (nil if not sent).
func (s *session) lookup(ctx context.Context, dir []byte, name string) ([]byte, *nfs.Fattr, error) {
	var res struct {
		FH   []byte
		Attr nfs.PostOpAttr
	}
	if err := s.decode(ctx, procLookup, diropargs{dir, name}, &res); err != nil {
		return nil, nil, err
	}
	if res.Attr.IsSet {
		return res.FH, &res.Attr.Attr, nil
	}
	return res.FH, nil, nil
}

// access returns which of the ACCESS3 bits asked the server grants.
func (s *session) access(ctx context.Context, fh []byte, bits uint32) (uint32, error) {
	var res struct {
		Attr   nfs.PostOpAttr
		Access uint32
	}
	err := s.decode(ctx, procAccess, struct {
		FH     []byte
		Access uint32
	}{fh, bits}, &res)
	return res.Access, err
}

func (s *session) readlink(ctx context.Context, fh []byte) (string, error) {
	var res struct {
		Attr   nfs.PostOpAttr
		Target string
	}
	err := s.decode(ctx, procReadlink, fh, &res)
	return res.Target, err
}

// read reads up to count bytes at off.
func (s *session) read(ctx context.Context, fh []byte, off uint64, count uint32) ([]byte, bool, error) {
	var res struct {
		Attr  nfs.PostOpAttr
		Count uint32
		EOF   bool
		Data  []byte
	}
	err := s.decode(ctx, procRead, struct {
		FH     []byte
		Offset uint64
		Count  uint32
	}{fh, off, count}, &res)
	return res.Data, res.EOF, err
}

// write writes data at off, FILE_SYNC: no COMMIT needed after it.
func (s *session) write(ctx context.Context, fh []byte, off uint64, data []byte) (uint32, error) {
	var res struct {
		Wcc   nfs.WccData
		Count uint32
	}
	err := s.decode(ctx, procWrite, struct {
		FH     []byte
		Offset uint64
		Count  uint32
		Stable uint32
		Data   []byte
	}{fh, off, uint32(len(data)), 2, data}, &res)
	return res.Count, err
}

// create makes a regular file; guarded, it fails with EEXIST if the name
// exists (go-nfs truncates an existing file on an unchecked CREATE).
func (s *session) create(ctx context.Context, dir []byte, name string, mode uint32) (newObj, error) {
	var res newObj
	err := s.decode(ctx, procCreate, struct {
		Where diropargs
		How   uint32 // 1: GUARDED
		Attr  nfs.Sattr3
	}{diropargs{dir, name}, 1, modeSattr(mode)}, &res)
	return res, err
}

func (s *session) mkdir(ctx context.Context, dir []byte, name string, mode uint32) (newObj, error) {
	var res newObj
	err := s.decode(ctx, procMkdir, struct {
		Where diropargs
		Attr  nfs.Sattr3
	}{diropargs{dir, name}, modeSattr(mode)}, &res)
	return res, err
}

func (s *session) symlink(ctx context.Context, dir []byte, name, target string) (newObj, error) {
	var res newObj
	err := s.decode(ctx, procSymlink, struct {
		Where  diropargs
		Attr   nfs.Sattr3
		Target string
	}{diropargs{dir, name}, modeSattr(0o777), target}, &res)
	return res, err
}

func (s *session) remove(ctx context.Context, dir []byte, name string) error {
	return s.decode(ctx, procRemove, diropargs{dir, name}, nil)
}

func (s *session) rmdir(ctx context.Context, dir []byte, name string) error {
	return s.decode(ctx, procRmdir, diropargs{dir, name}, nil)
}

func (s *session) rename(ctx context.Context, fromDir []byte, from string, toDir []byte, to string) error {
	return s.decode(ctx, procRename, struct{ From, To diropargs }{diropargs{fromDir, from}, diropargs{toDir, to}}, nil)
}

func (s *session) link(ctx context.Context, fh, dir []byte, name string) error {
	return s.decode(ctx, procLink, struct {
		FH   []byte
		Link diropargs
	}{fh, diropargs{dir, name}}, nil)
}

// dirEntry is one READDIRPLUS entry.
type dirEntry struct {
	Fileid uint64
	Name   string
	Cookie uint64
	Attr   nfs.PostOpAttr
	FH     nfs.PostOpFH3
}

// readdir lists a whole directory.
func (s *session) readdir(ctx context.Context, dir []byte) ([]dirEntry, error) {
	const badCookie = 10003
	for attempt := 0; ; attempt++ {
		list, err := s.readdirOnce(ctx, dir)
		if st, ok := err.(nfsStatus); ok && st == badCookie && attempt < 3 {
			continue // the directory changed between pages: start over
		}
		return list, err
	}
}

func (s *session) readdirOnce(ctx context.Context, dir []byte) ([]dirEntry, error) {
	var list []dirEntry
	var cookie, verf uint64
	for {
		r, err := s.call(ctx, procReaddirplus, struct {
			Dir                []byte
			Cookie, Verf       uint64
			DirCount, MaxCount uint32
		}{dir, cookie, verf, 16 << 10, 64 << 10})
		if err != nil {
			return nil, err
		}
		var head struct {
			Attr nfs.PostOpAttr
			Verf uint64
		}
		if err := xdr.Read(r, &head); err != nil {
			return nil, err
		}
		verf = head.Verf
		n := 0
		for {
			var follows bool
			if err := xdr.Read(r, &follows); err != nil {
				return nil, err
			}
			if !follows {
				break
			}
			var e dirEntry
			if err := xdr.Read(r, &e); err != nil {
				return nil, err
			}
			cookie = e.Cookie
			n++
			list = append(list, e)
		}
		var eof bool
		if err := xdr.Read(r, &eof); err != nil {
			return nil, err
		}
		if eof || n == 0 {
			return list, nil
		}
	}
}

// fsstat is FSSTAT3resok after its attributes.
type fsstat struct {
	Tbytes, Fbytes, Abytes, Tfiles, Ffiles, Afiles uint64
	Invarsec                                       uint32
}

func (s *session) fsstat(ctx context.Context, fh []byte) (*fsstat, error) {
	r, err := s.call(ctx, procFsstat, fh)
	if err != nil {
		return nil, err
	}
	var attr nfs.PostOpAttr
	var st fsstat
	if err := xdr.Read(r, &attr); err != nil {
		return nil, err
	}
	return &st, xdr.Read(r, &st)
}

func (s *session) fsinfo(ctx context.Context, fh []byte) (*nfs.FSInfo, error) {
	var res nfs.FSInfo
	return &res, s.decode(ctx, procFsinfo, fh, &res)
}

func (s *session) commit(ctx context.Context, fh []byte) error {
	return s.decode(ctx, procCommit, struct {
		FH     []byte
		Offset uint64
		Count  uint32
	}{fh, 0, 0}, nil)
}

// modeSattr sets only the permission bits.
func modeSattr(mode uint32) nfs.Sattr3 {
	return nfs.Sattr3{Mode: nfs.SetMode{SetIt: true, Mode: mode & 0o7777}}
}

package sim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
)

// Who an NFS call comes from. A real NFS server (vSAN File Service's is
// NFS-Ganesha) acts for the AUTH_UNIX credential each call carries: the
// files a client creates are the caller's, permissions are checked against
// the caller's uid and groups, and with root squash (a net permission whose
// allowRoot is false: "Whether to squash the root user or not", vSAN
// Management API, vim.vsan.FileShareNetPermission) uid and gid 0 are
// mapped to the anonymous user, nobody (65534, the anonuid and anongid of
// exports(5)), who may not chown and may write only where others may.
// go-nfs acts as the server process (root) and hands its filesystems no
// credential, so the embedded vCenter reads it from the call itself: each
// connection reads one call at a time, and one call at a time is handled in
// the whole server (from reading a call to writing its reply), so the
// credential of the call in progress is the caller's. go-nfs serves the
// calls of a connection one after another anyway; the embedded vCenter's
// clients are tests.

// nfsAnonID is the anonymous uid and gid a squashed root becomes.
const nfsAnonID = 65534

// authUnix is the AUTH_UNIX flavor (RFC 5531, section 8.2, appendix A).
const authUnix = 1

// rpcCred is the credential of an NFS call, as sent.
type rpcCred struct {
	unix     bool // AUTH_UNIX; otherwise the caller is anonymous
	uid, gid uint32
	gids     []uint32
	client   string // the client's IP address
}

// nfsCaller is the credential of the call being handled, one at a time.
type nfsCaller struct {
	token chan struct{} // held from reading a call to writing its reply
	mu    sync.Mutex
	cur   rpcCred
}

func newNFSCaller() *nfsCaller { return &nfsCaller{token: make(chan struct{}, 1)} }

func (c *nfsCaller) current() rpcCred {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

func (c *nfsCaller) set(cr rpcCred) {
	c.mu.Lock()
	c.cur = cr
	c.mu.Unlock()
}

// credListener wraps each connection in a credConn.
type credListener struct {
	net.Listener
	caller *nfsCaller
}

func (l credListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	client := ""
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		client = a.IP.String()
	}
	return newCredConn(c, l.caller, client), nil
}

// credConn gives the server one call at a time (RPC record marking, RFC
// 5531 section 11), each after the reply to the one before was written, and
// makes the call's credential the caller's while it is handled.
type credConn struct {
	net.Conn
	caller  *nfsCaller
	client  string
	pending []byte // the rest of the call being read by the server

	mu      sync.Mutex
	cond    *sync.Cond
	holding bool // the token is ours: a call was read, its reply not yet written
	closed  bool
	done    chan struct{} // closed on Close

	wmu    sync.Mutex
	whead  []byte // a reply's record mark, as it is written
	wleft  uint32 // bytes of the current reply fragment still to come
	wlast  bool   // the current fragment is the reply's last
	closer sync.Once
}

func newCredConn(c net.Conn, caller *nfsCaller, client string) *credConn {
	cc := &credConn{Conn: c, caller: caller, client: client, done: make(chan struct{})}
	cc.cond = sync.NewCond(&cc.mu)
	return cc
}

func (c *credConn) Read(b []byte) (int, error) {
	if len(c.pending) == 0 {
		c.mu.Lock()
		for c.holding && !c.closed {
			c.cond.Wait()
		}
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return 0, net.ErrClosed
		}
		rec, err := readRecord(c.Conn)
		if err != nil {
			return 0, err
		}
		select {
		case c.caller.token <- struct{}{}:
		case <-c.done:
			return 0, net.ErrClosed
		}
		c.mu.Lock()
		c.holding = true
		c.mu.Unlock()
		cr := parseCred(rec)
		cr.client = c.client
		c.caller.set(cr)
		// One fragment, the last: go-nfs reads no other.
		c.pending = binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(rec)), 1<<31|uint32(len(rec))) //nolint:gosec // a record fits
		c.pending = append(c.pending, rec...)
	}
	n := copy(b, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// Write follows the replies' record marks: the end of a reply gives the
// token back.
func (c *credConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.wmu.Lock()
	replied := c.track(b[:n])
	c.wmu.Unlock()
	if replied {
		c.release()
	}
	return n, err
}

// track reads the record marks of what was written; true when a reply
// ended in it.
func (c *credConn) track(b []byte) bool {
	ended := false
	for len(b) > 0 {
		if c.wleft == 0 {
			k := min(4-len(c.whead), len(b))
			c.whead = append(c.whead, b[:k]...)
			b = b[k:]
			if len(c.whead) < 4 {
				break
			}
			mark := binary.BigEndian.Uint32(c.whead)
			c.whead = c.whead[:0]
			c.wleft, c.wlast = mark&^(1<<31), mark&(1<<31) != 0
			if c.wleft == 0 && c.wlast {
				ended = true
			}
			continue
		}
		k := min(uint32(len(b)), c.wleft) //nolint:gosec // len fits
		c.wleft -= k
		b = b[k:]
		if c.wleft == 0 && c.wlast {
			ended = true
		}
	}
	return ended
}

func (c *credConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		c.holding = false
		<-c.caller.token
	}
	c.cond.Broadcast()
}

func (c *credConn) Close() error {
	c.closer.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.done)
		c.release()
	})
	return c.Conn.Close()
}

// maxRecord bounds a call's size (go-nfs's writes are at most 1 MiB).
const maxRecord = 4 << 20

var errRecordTooLong = errors.New("NFS call longer than 4 MiB")

// readRecord reads one RPC record (all its fragments) without the marks.
func readRecord(r io.Reader) ([]byte, error) {
	var rec []byte
	for {
		var mark [4]byte
		if _, err := io.ReadFull(r, mark[:]); err != nil {
			return nil, err
		}
		m := binary.BigEndian.Uint32(mark[:])
		n := m &^ (1 << 31)
		if len(rec)+int(n) > maxRecord {
			return nil, errRecordTooLong
		}
		start := len(rec)
		rec = append(rec, make([]byte, n)...)
		if _, err := io.ReadFull(r, rec[start:]); err != nil {
			return nil, err
		}
		if m&(1<<31) != 0 {
			return rec, nil
		}
	}
}

// parseCred reads the credential of an RPC call (RFC 5531 section 9: xid,
// message type, RPC version, program, version, procedure, then the
// credential; AUTH_UNIX's body: stamp, machine name, uid, gid, gids). What
// can't be read is an anonymous caller.
func parseCred(rec []byte) rpcCred {
	r := bytes.NewReader(rec)
	var hdr [8]uint32
	if binary.Read(r, binary.BigEndian, &hdr) != nil || hdr[1] != 0 || hdr[6] != authUnix {
		return rpcCred{}
	}
	body := make([]byte, hdr[7])
	if _, err := io.ReadFull(r, body); err != nil {
		return rpcCred{}
	}
	b := bytes.NewReader(body)
	var stamp, nameLen uint32
	if binary.Read(b, binary.BigEndian, &stamp) != nil || binary.Read(b, binary.BigEndian, &nameLen) != nil || nameLen > 255 {
		return rpcCred{}
	}
	if _, err := b.Seek(int64((nameLen+3)&^3), io.SeekCurrent); err != nil {
		return rpcCred{}
	}
	var ids [3]uint32 // uid, gid, number of gids
	if binary.Read(b, binary.BigEndian, &ids) != nil || ids[2] > 16 {
		return rpcCred{}
	}
	gids := make([]uint32, ids[2])
	if binary.Read(b, binary.BigEndian, gids) != nil {
		return rpcCred{}
	}
	return rpcCred{unix: true, uid: ids[0], gid: ids[1], gids: gids}
}

// nfsUser is who the server acts for: the credential after root squash.
type nfsUser struct {
	uid, gid uint32
	gids     []uint32
}

// effective applies root squash (allowRoot false) and makes a caller
// without AUTH_UNIX anonymous, as exports(5) and Ganesha do.
func effective(cr rpcCred, allowRoot bool) nfsUser {
	if !cr.unix {
		return nfsUser{uid: nfsAnonID, gid: nfsAnonID}
	}
	u := nfsUser{uid: cr.uid, gid: cr.gid}
	if allowRoot {
		u.gids = cr.gids
		return u
	}
	if u.uid == 0 {
		u.uid = nfsAnonID
	}
	if u.gid == 0 {
		u.gid = nfsAnonID
	}
	for _, g := range cr.gids {
		if g == 0 {
			g = nfsAnonID
		}
		u.gids = append(u.gids, g)
	}
	return u
}

func (u nfsUser) root() bool { return u.uid == 0 }

func (u nfsUser) inGroup(g uint32) bool {
	if u.gid == g {
		return true
	}
	for _, x := range u.gids {
		if x == g {
			return true
		}
	}
	return false
}

// may says whether u has the access asked (r 4, w 2, x 1) to a file of
// mode perm owned by uid:gid; root may do anything.
func (u nfsUser) may(perm uint32, uid, gid uint32, want uint32) bool {
	if u.root() {
		return true
	}
	switch {
	case u.uid == uid:
		perm >>= 6
	case u.inGroup(gid):
		perm >>= 3
	}
	return perm&want == want
}

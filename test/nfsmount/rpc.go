package nfsmount

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"

	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
)

// An ONC RPC (RFC 5531) client over one TCP connection, with record
// marking. It encodes with go-nfs-client's XDR and header types, but not
// its rpc.Client: that one retries a lost reply 100 times (5 s each)
// before giving up, and can close a reply channel twice (a panic) when a
// connection breaks with calls in flight. Here every call ends when its
// context does, and a broken connection fails all its calls at once.

// maxRecord bounds one RPC record (a READ reply carries at most maxIO).
const maxRecord = 8 << 20

var xids atomic.Uint32

func init() { xids.Store(rand.Uint32()) }

// errConnClosed is the error of calls on a connection that was closed.
var errConnClosed = errors.New("connection closed")

// rpcConn is one connection to a server; calls may run concurrently.
type rpcConn struct {
	conn net.Conn
	wmu  sync.Mutex // serializes records on the wire

	mu      sync.Mutex
	pending map[uint32]chan []byte // calls waiting for their reply, by xid
	err     error                  // why the connection died, once it has
	dead    chan struct{}          // closed when it dies
}

func dialRPC(ctx context.Context, addr string) (*rpcConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &rpcConn{conn: nc, pending: map[uint32]chan []byte{}, dead: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

// readLoop hands each reply to the call waiting for it, until the
// connection fails.
func (c *rpcConn) readLoop() {
	r := bufio.NewReaderSize(c.conn, 64<<10)
	for {
		rec, err := readRecord(r)
		if err != nil {
			c.fail(err)
			return
		}
		if len(rec) < 4 {
			continue
		}
		xid := binary.BigEndian.Uint32(rec)
		c.mu.Lock()
		ch := c.pending[xid]
		delete(c.pending, xid)
		c.mu.Unlock()
		if ch != nil {
			ch <- rec // buffered: never blocks
		}
	}
}

// readRecord reads one record, made of one or more fragments.
func readRecord(r io.Reader) ([]byte, error) {
	var rec []byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		last := n&(1<<31) != 0
		n &^= 1 << 31
		if len(rec)+int(n) > maxRecord {
			return nil, fmt.Errorf("rpc: record larger than %d bytes", maxRecord)
		}
		start := len(rec)
		rec = append(rec, make([]byte, n)...)
		if _, err := io.ReadFull(r, rec[start:]); err != nil {
			return nil, err
		}
		if last {
			return rec, nil
		}
	}
}

// fail marks the connection dead (the first error sticks) and closes it.
func (c *rpcConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.dead)
		_ = c.conn.Close()
	}
}

func (c *rpcConn) close() { c.fail(errConnClosed) }

func (c *rpcConn) alive() bool {
	select {
	case <-c.dead:
		return false
	default:
		return true
	}
}

// callHeader is an RPC call message up to the procedure's arguments.
type callHeader struct {
	Xid     uint32
	Msgtype uint32 // 0: CALL
	rpc.Header
}

// call sends one call and waits for its reply, or until ctx is done.
// It returns the procedure's results, undecoded.
func (c *rpcConn) call(ctx context.Context, prog, vers, proc uint32, cred rpc.Auth, args any) (*bytes.Reader, error) {
	xid := xids.Add(1)
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 0, 0}) // record mark, set below
	hdr := callHeader{Xid: xid, Header: rpc.Header{
		Rpcvers: 2, Prog: prog, Vers: vers, Proc: proc, Cred: cred, Verf: rpc.AuthNull,
	}}
	if err := xdr.Write(&buf, hdr); err != nil {
		return nil, err
	}
	if args != nil {
		if err := xdr.Write(&buf, args); err != nil {
			return nil, err
		}
	}
	msg := buf.Bytes()
	binary.BigEndian.PutUint32(msg, uint32(len(msg)-4)|1<<31)

	reply := make(chan []byte, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.pending[xid] = reply
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, xid)
		c.mu.Unlock()
	}

	c.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetWriteDeadline(dl)
	}
	_, err := c.conn.Write(msg)
	c.wmu.Unlock()
	if err != nil {
		forget()
		c.fail(err) // a partly written record spoils the stream
		return nil, err
	}

	select {
	case rec := <-reply:
		return parseReply(rec)
	case <-c.dead:
		select { // a reply that made it just before the end
		case rec := <-reply:
			return parseReply(rec)
		default:
		}
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return nil, err
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}

// rpcError is a call the server refused at the RPC level.
type rpcError struct{ msg string }

func (e *rpcError) Error() string { return "rpc: " + e.msg }

// parseReply checks a reply message and returns its results.
func parseReply(rec []byte) (*bytes.Reader, error) {
	r := bytes.NewReader(rec)
	var h struct{ Xid, Mtype, Stat uint32 }
	if err := xdr.Read(r, &h); err != nil {
		return nil, err
	}
	if h.Mtype != 1 {
		return nil, &rpcError{"not a reply"}
	}
	if h.Stat != 0 { // MSG_DENIED
		why, _ := xdr.ReadUint32(r)
		if why == 1 {
			return nil, &rpcError{"authentication error"}
		}
		return nil, &rpcError{"RPC version mismatch"}
	}
	if _, err := xdr.ReadUint32(r); err != nil { // verifier flavor
		return nil, err
	}
	if _, err := xdr.ReadOpaque(r); err != nil { // verifier body
		return nil, err
	}
	stat, err := xdr.ReadUint32(r)
	if err != nil {
		return nil, err
	}
	switch stat {
	case 0:
		return r, nil
	case 1:
		return nil, &rpcError{"program unavailable"}
	case 2:
		return nil, &rpcError{"program version mismatch"}
	case 3:
		return nil, &rpcError{"procedure unavailable"}
	case 4:
		return nil, &rpcError{"garbage arguments"}
	default:
		return nil, &rpcError{"system error"}
	}
}

package sim

import (
	"net"
	"sync"

	"k8s.io/klog/v2"
)

// An outage of vSAN File Service's NFS server: the file server hangs, or
// its VM is gone and the address stays (HangNFS), until it comes back as
// after a restart (RestartNFS). What clients see is what a hung server
// shows: their connections stay open and new ones are accepted, but
// nothing sent is answered; a hard mount's calls wait, a soft one's time
// out. At the restart the connections the server had are reset: clients
// reconnect, mount again and send what was lost again.

// nfsOutage follows the NFS server's connections, to hang and reset them.
type nfsOutage struct {
	mu    sync.Mutex
	hung  bool
	conns map[*outageConn]struct{}
}

// listener makes ln's connections subject to the outage.
func (o *nfsOutage) listener(ln net.Listener) net.Listener {
	return &outageListener{Listener: ln, o: o}
}

func (o *nfsOutage) isHung() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hung
}

func (o *nfsOutage) hang() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.hung = true
}

// restart ends the outage and resets every connection the server has.
func (o *nfsOutage) restart() int {
	o.mu.Lock()
	o.hung = false
	conns := make([]*outageConn, 0, len(o.conns))
	for c := range o.conns {
		conns = append(conns, c)
	}
	o.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return len(conns)
}

type outageListener struct {
	net.Listener
	o *nfsOutage
}

func (l *outageListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	oc := &outageConn{Conn: c, o: l.o}
	l.o.mu.Lock()
	if l.o.conns == nil {
		l.o.conns = map[*outageConn]struct{}{}
	}
	l.o.conns[oc] = struct{}{}
	l.o.mu.Unlock()
	return oc, nil
}

// outageConn is a connection of the NFS server: while it hangs, what the
// client sends is read and lost (so that a client giving up and closing
// ends it), and the server's replies are dropped.
type outageConn struct {
	net.Conn
	o *nfsOutage
}

func (c *outageConn) Read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(b)
		if err != nil || !c.o.isHung() {
			return n, err
		}
	}
}

func (c *outageConn) Write(b []byte) (int, error) {
	if c.o.isHung() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *outageConn) Close() error {
	c.o.mu.Lock()
	delete(c.o.conns, c)
	c.o.mu.Unlock()
	return c.Conn.Close()
}

// HangNFS makes vSAN File Service's NFS server stop answering, as a file
// server that hangs or whose VM went away does: its connections stay open
// and new ones are accepted, but nothing sent is answered. NFS clients'
// calls wait (a hard mount: for as long as it takes) or time out (a soft
// one). RestartNFS ends it. Without an NFS server (not root): nothing.
func (s *Sim) HangNFS() {
	if s.nfs == nil || s.nfs.addr == "" {
		return
	}
	s.nfs.outage.hang()
	klog.InfoS("vCenter simulator: vSAN File Service's NFS server hangs", "address", s.nfs.addr)
}

// RestartNFS brings the NFS server back as a restarted one: the
// connections it had are reset (clients reconnect and mount again, and
// send again what was lost), and what is sent is answered again.
func (s *Sim) RestartNFS() {
	if s.nfs == nil || s.nfs.addr == "" {
		return
	}
	n := s.nfs.outage.restart()
	klog.InfoS("vCenter simulator: vSAN File Service's NFS server restarted", "address", s.nfs.addr, "connectionsReset", n)
}

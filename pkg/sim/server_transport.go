package sim

import (
	"bytes"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// The embedded vCenter serves HTTPS itself rather than through the
// simulator's test server, so that what happens on the wire can be made to
// fail: connections reset before or after a call is done, a 503 from the
// reverse proxy, a call that hangs, an outage during which every
// connection is reset. The simulator's handlers (SOAP, vAPI, files) are
// served unchanged behind it.

// wire is the HTTPS front of the embedded vCenter.
type wire struct {
	lab     *lab
	srv     *http.Server
	ln      net.Listener
	handler http.Handler

	mu        sync.Mutex
	conns     map[net.Conn]struct{} // open connections, to reset in an outage
	downUntil time.Time
}

func newWire(b *lab, handler http.Handler, ln net.Listener, cert *tls.Config) *wire {
	w := &wire{lab: b, handler: handler, conns: map[net.Conn]struct{}{}}
	tcfg := cert.Clone()
	tcfg.NextProtos = []string{"http/1.1"} // connections can be taken over (reset)
	w.ln = tls.NewListener(&labListener{Listener: ln, w: w}, tcfg)
	w.srv = &http.Server{
		Handler:           http.HandlerFunc(w.serve),
		ReadHeaderTimeout: 30 * time.Second,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // no HTTP/2
		ConnState:         w.track,
		ErrorLog:          log.New(StdlibLogWriter{}, "", 0),
	}
	go func() {
		if err := w.srv.Serve(w.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "vCenter simulator: serving stopped")
		}
	}()
	return w
}

// close stops serving: the listener first, then every connection (a
// long poll left open would otherwise hold it).
func (w *wire) close() {
	_ = w.srv.Close()
}

func (w *wire) track(c net.Conn, s http.ConnState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch s {
	case http.StateNew:
		w.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(w.conns, c)
	}
}

// down reports whether an outage is on.
func (w *wire) down() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return time.Now().Before(w.downUntil)
}

// outage resets every connection and every new one for d (d ≤ 0 ends an
// outage at once).
func (w *wire) outage(d time.Duration) {
	w.mu.Lock()
	if d <= 0 {
		w.downUntil = time.Time{}
		w.mu.Unlock()
		return
	}
	w.downUntil = time.Now().Add(d)
	w.mu.Unlock()
	w.resetAll()
}

// resetAll resets every open connection, as a vCenter whose services
// restart does.
func (w *wire) resetAll() {
	w.mu.Lock()
	conns := make([]net.Conn, 0, len(w.conns))
	for c := range w.conns {
		conns = append(conns, c)
	}
	w.mu.Unlock()
	for _, c := range conns {
		resetConn(c)
	}
}

// labListener resets connections made during an outage.
type labListener struct {
	net.Listener
	w *wire
}

func (l *labListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.w.down() {
			return c, nil
		}
		resetConn(c)
	}
}

// resetConn closes a connection with a TCP reset (SO_LINGER 0), as a
// vCenter whose process died or whose proxy dropped the connection does.
func resetConn(c net.Conn) {
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}

// reset takes the request's connection over and resets it.
func reset(rw http.ResponseWriter) {
	hj, ok := rw.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // closes the connection
	}
	c, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	resetConn(c)
}

// serve is every request's way in: outage and transport faults first,
// then the simulator.
func (w *wire) serve(rw http.ResponseWriter, r *http.Request) {
	if w.down() {
		reset(rw)
		return
	}
	if r.Method == http.MethodPost {
		w.lab.requests.Add(1)
	}
	if r.Method != http.MethodPost || !w.lab.faults.active() {
		w.handler.ServeHTTP(rw, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	_ = r.Body.Close()
	if err != nil {
		reset(rw)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	method := soapMethodOf(body)
	if method == "" {
		w.handler.ServeHTTP(rw, r)
		return
	}
	rule, ok := w.lab.faults.take(method, layerTransport)
	if !ok {
		w.handler.ServeHTTP(rw, r)
		return
	}
	w.lab.events.add(Event{Kind: EventFault, Method: method, Detail: rule.Fault})
	switch rule.Fault {
	case FaultReset:
		reset(rw)
	case FaultHTTP503:
		rw.Header().Set("Content-Type", "text/html")
		rw.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(rw, "<html><body>503 Service Unavailable (Failed to connect to endpoint: [N7Vmacore4Http16LocalServiceSpecE:0x0000] _serverNamespace = /sdk action = Allow _port = 8085)</body></html>")
	case FaultHang:
		select {
		case <-time.After(rule.Duration):
		case <-r.Context().Done():
		case <-w.lab.stopping():
		}
		reset(rw)
	case FaultLostReply:
		w.handler.ServeHTTP(discard{header: http.Header{}}, r)
		reset(rw)
	}
}

// discard is a ResponseWriter whose answer nobody gets.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(p []byte) (int, error) { return len(p), nil }
func (d discard) WriteHeader(int)             {}

// soapMethodOf names the SOAP method of a request body: the first element
// inside the envelope's Body ("" when the body is not SOAP).
func soapMethodOf(body []byte) string {
	d := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if inBody {
			return se.Name.Local
		}
		if se.Name.Local == "Body" {
			inBody = true
		}
	}
}

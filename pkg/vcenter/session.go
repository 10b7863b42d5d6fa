package vcenter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/cns"
	"github.com/vmware/govmomi/pbm"
	pbmmethods "github.com/vmware/govmomi/pbm/methods"
	pbmtypes "github.com/vmware/govmomi/pbm/types"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vsan"
	"k8s.io/klog/v2"
)

// maxIdleConns is the HTTP idle-connection pool per vCenter.
const maxIdleConns = 8

// conn is the session with vCenter and the three SOAP clients on it. Every
// call goes through the same chain: re-login on NotAuthenticated (once),
// the call's bound and the resending of reads (calls.go), the Observer,
// the wrapped transport.
type conn struct {
	opts Options
	obs  Observer
	user atomic.Pointer[url.Userinfo]
	gate loginGate

	vim *vim25.Client // RoundTripper: the full chain
	cns *cns.Client
	pbm *pbm.Client
	// vsan is the vSAN health endpoint (File Service state; file_volumes.go).
	vsan soap.RoundTripper
	// sm logs in and out over the chain without re-login.
	sm *session.Manager

	loginMu sync.Mutex
	gen     atomic.Uint64 // incremented by every successful login
	closed  atomic.Bool   // logged out for good: no re-login
}

// dial connects and logs in. The caller owns the returned conn.
func dial(ctx context.Context, opts Options, obs Observer) (*conn, error) {
	u := &url.URL{
		Scheme: "https",
		Host:   net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)),
		Path:   vim25.Path,
	}
	sc := soap.NewClient(u, opts.Insecure)
	var cas *caFile
	if !opts.Insecure && opts.CAFile != "" {
		cas = &caFile{path: opts.CAFile}
		if _, err := cas.roots(); err != nil {
			return nil, fmt.Errorf("vcenter: %w", err)
		}
	}
	if w := insecureWarning(opts); w != "" {
		klog.InfoS("Warning: "+w, "host", opts.Host)
	}
	sc.UserAgent = opts.UserAgent
	// The long poll holds one connection; calls run beside it. Keep enough
	// idle connections that bursts don't re-handshake TLS.
	t := sc.DefaultTransport()
	t.MaxIdleConnsPerHost = maxIdleConns
	t.DialTLSContext = dialTLS(t, opts, cas)
	wrapHTTP(sc, opts)

	c := &conn{opts: opts, obs: obs}
	c.user.Store(url.UserPassword(opts.User, opts.Password))

	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("vcenter: connect to %s: %w", u.Host, mapFault(err, nil))
	}
	base := c.chain(sc, EndpointVIM)
	vc.RoundTripper = &reloginRT{c: c, next: base}
	c.vim = vc
	c.sm = session.NewManager(&vim25.Client{Client: sc, ServiceContent: vc.ServiceContent, RoundTripper: base})
	if err := c.login(ctx); err != nil {
		return nil, err
	}

	if c.cns, err = c.newCNS(sc); err != nil {
		c.logout(ctx)
		return nil, fmt.Errorf("vcenter: CNS endpoint: %w", mapFault(err, nil))
	}
	if c.pbm, err = c.newPBM(ctx, sc); err != nil {
		c.logout(ctx)
		return nil, fmt.Errorf("vcenter: SPBM endpoint: %w", mapFault(err, nil))
	}
	c.vsan = c.newVSAN(sc)
	return c, nil
}

// wrapHTTP applies Options.WrapTransport to one SOAP client's HTTP client.
// Service clients copy the bare *http.Transport, not the wrapper, so every
// one of them is wrapped here.
func wrapHTTP(sc *soap.Client, opts Options) {
	if opts.WrapTransport != nil {
		sc.Client.Transport = opts.WrapTransport(sc.Client.Transport)
	}
}

// chain is the round-tripper stack below re-login for one SOAP client, the
// endpoint's (EndpointVIM, …).
func (c *conn) chain(sc *soap.Client, endpoint string) soap.RoundTripper {
	return &callRT{next: &observeRT{next: sc, obs: c.obs, endpoint: endpoint}, maxWait: c.opts.WatchMaxWait}
}

// newCNS builds the CNS client by hand (cns.NewClient would make requests on
// an unwrapped transport) on the vim25 client's cookie jar, so that a
// re-login is seen by CNS calls too.
func (c *conn) newCNS(sc *soap.Client) (*cns.Client, error) {
	csc := sc.NewServiceClient(cns.Path, cns.Namespace)
	csc.Client.Jar = sc.Client.Jar
	wrapHTTP(csc, c.opts)
	if err := csc.UseServiceVersion(cns.Namespace); err != nil {
		return nil, err
	}
	return &cns.Client{Client: csc, RoundTripper: &reloginRT{c: c, next: c.chain(csc, EndpointCNS)}}, nil
}

// newVSAN is the vSAN health endpoint's round-tripper, on the session's
// cookies like CNS's. It makes no call: a vCenter without vSAN answers
// only when a file volume asks.
func (c *conn) newVSAN(sc *soap.Client) soap.RoundTripper {
	vsc := sc.NewServiceClient(vsan.Path, vsan.Namespace)
	vsc.Client.Jar = sc.Client.Jar
	wrapHTTP(vsc, c.opts)
	return &reloginRT{c: c, next: c.chain(vsc, EndpointVSAN)}
}

// newPBM builds the SPBM client by hand, for the same reason as newCNS.
func (c *conn) newPBM(ctx context.Context, sc *soap.Client) (*pbm.Client, error) {
	psc := sc.NewServiceClient(pbm.Path, pbm.Namespace)
	psc.Cookie = sc.SessionCookie // SPBM authenticates by the SOAP header cookie
	psc.Client.Jar = sc.Client.Jar
	wrapHTTP(psc, c.opts)
	rt := &reloginRT{c: c, next: c.chain(psc, EndpointPBM)}
	res, err := pbmmethods.PbmRetrieveServiceContent(ctx, rt, &pbmtypes.PbmRetrieveServiceContent{This: pbm.ServiceInstance})
	if err != nil {
		return nil, err
	}
	return &pbm.Client{Client: psc, ServiceContent: res.Returnval, RoundTripper: rt}, nil
}

func (c *conn) login(ctx context.Context) error {
	user := c.user.Load()
	if ok, next := c.gate.allow(time.Now()); !ok {
		return fmt.Errorf("%w: vCenter %s refused the credentials of %s %d times in the last %s; the next attempt is at %s, or at once when csi-vsphere.conf changes",
			ErrNotAuthenticated, c.opts.Host, user.Username(), maxRefusedLogins, refusedLoginWindow, next.Format(time.RFC3339))
	}
	if err := c.sm.Login(ctx, user); err != nil {
		mapped := mapFault(err, nil)
		if errors.Is(mapped, ErrNotAuthenticated) {
			n := c.gate.refused(time.Now())
			c.obs.LoginRefused()
			klog.ErrorS(err, "vCenter refused the driver's credentials: check the user and password in csi-vsphere.conf (the Secret); "+
				"the driver tries at most 3 times in 5 minutes so that vCenter does not lock the account",
				"host", c.opts.Host, "user", user.Username(), "refusedInWindow", n)
		} else {
			klog.ErrorS(err, "vCenter login failed", "host", c.opts.Host, "user", user.Username())
		}
		return fmt.Errorf("vcenter: login to %s as %s: %w", c.opts.Host, user.Username(), mapped)
	}
	c.gate.reset()
	c.gen.Add(1)
	klog.V(2).InfoS("Logged in to vCenter", "host", c.opts.Host, "user", user.Username())
	return nil
}

// setCredentials takes new credentials (a rotated Secret): the next call
// logs in with them, whatever the login gate said about the old ones.
func (c *conn) setCredentials(user, password string) {
	old := c.user.Load()
	if p, _ := old.Password(); old.Username() == user && p == password {
		return
	}
	c.user.Store(url.UserPassword(user, password))
	c.gate.reset()
	klog.InfoS("vCenter credentials changed; logging in with them", "host", c.opts.Host, "user", user)
}

// relogin logs in again unless another caller did since generation gen.
func (c *conn) relogin(ctx context.Context, gen uint64) error {
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	if c.gen.Load() != gen {
		return nil
	}
	if c.closed.Load() {
		return errClosed
	}
	klog.InfoS("vCenter session lost, logging in again", "host", c.opts.Host, "user", c.user.Load().Username())
	return c.login(ctx)
}

func (c *conn) logout(ctx context.Context) {
	c.closed.Store(true)
	if err := c.sm.Logout(ctx); err != nil {
		klog.V(2).InfoS("vCenter logout failed", "host", c.opts.Host, "err", err)
	}
}

// reloginRT retries a call once, after logging in again, when vCenter
// answers NotAuthenticated.
type reloginRT struct {
	c    *conn
	next soap.RoundTripper
}

func (r *reloginRT) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	gen := r.c.gen.Load()
	err := r.next.RoundTrip(ctx, req, res)
	if !isNotAuthenticated(err) {
		return err
	}
	if lerr := r.c.relogin(ctx, gen); lerr != nil {
		return errors.Join(err, lerr)
	}
	resetBody(res)
	return r.next.RoundTrip(ctx, req, res)
}

// resetBody clears a SOAP response body (its Res and Fault_ fields) so that a
// retried call does not see the first attempt's fault.
func resetBody(res soap.HasFault) {
	v := reflect.ValueOf(res)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return
	}
	v = v.Elem()
	for _, name := range []string{"Res", "Fault_"} {
		if f := v.FieldByName(name); f.IsValid() && f.CanSet() {
			f.Set(reflect.Zero(f.Type()))
		}
	}
}

func isNotAuthenticated(err error) bool {
	if err == nil || !soap.IsSoapFault(err) {
		return false
	}
	_, ok := soap.ToSoapFault(err).VimFault().(types.NotAuthenticated)
	return ok
}

// observeRT tells the Observer about every SOAP round trip.
type observeRT struct {
	next     soap.RoundTripper
	obs      Observer
	endpoint string
}

func (o *observeRT) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	start := time.Now()
	err := o.next.RoundTrip(ctx, req, res)
	took := time.Since(start)
	if e, ok := o.obs.(EndpointObserver); ok {
		e.SOAPCallTo(o.endpoint, soapMethod(req), faultName(err), took)
	} else {
		o.obs.SOAPCall(soapMethod(req), faultName(err), took)
	}
	return err
}

// soapMethod names the SOAP method of a request body ("WaitForUpdatesExBody"
// → "WaitForUpdatesEx").
func soapMethod(req soap.HasFault) string {
	t := reflect.TypeOf(req)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "unknown"
	}
	// The request's XML element is the method's name; govmomi's body type
	// names differ for some (CnsUpdateVolumeBody carries
	// CnsUpdateVolumeMetadata).
	if t.Kind() == reflect.Struct {
		if f, ok := t.FieldByName("Req"); ok {
			tag, _, _ := strings.Cut(f.Tag.Get("xml"), ",")
			if _, local, ok := strings.Cut(tag, " "); ok && local != "" {
				return local
			}
		}
	}
	return strings.TrimSuffix(t.Name(), "Body")
}

// faultName is "" for success, the vim fault's type name for a SOAP fault,
// "NetworkError" otherwise.
func faultName(err error) string {
	switch {
	case err == nil:
		return ""
	case soap.IsSoapFault(err):
		if f := soap.ToSoapFault(err).VimFault(); f != nil {
			t := reflect.TypeOf(f)
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			return t.Name()
		}
		return "SoapFault"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "Canceled"
	}
	return "NetworkError"
}

// A vCenter's SSO locks an account after 5 refused logins in 180 s by
// default. The driver stays well below: at most maxRefusedLogins refused
// logins in refusedLoginWindow, then it waits (calls fail at once with
// ErrNotAuthenticated) until the window has room, or the credentials change.
const (
	maxRefusedLogins   = 3
	refusedLoginWindow = 5 * time.Minute
)

// loginGate counts refused logins.
type loginGate struct {
	mu      sync.Mutex
	refusal []time.Time
}

// allow says whether a login may be tried now, and if not, when.
func (g *loginGate) allow(now time.Time) (bool, time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prune(now)
	if len(g.refusal) < maxRefusedLogins {
		return true, now
	}
	return false, g.refusal[0].Add(refusedLoginWindow)
}

func (g *loginGate) refused(now time.Time) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prune(now)
	g.refusal = append(g.refusal, now)
	return len(g.refusal)
}

func (g *loginGate) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refusal = nil
}

func (g *loginGate) prune(now time.Time) {
	kept := g.refusal[:0]
	for _, t := range g.refusal {
		if now.Sub(t) < refusedLoginWindow {
			kept = append(kept, t)
		}
	}
	g.refusal = kept
}

// dialTLS connects to vCenter: TCP with a bounded connect and keep-alive
// probes (a connection that vCenter or the network dropped without a word
// is noticed within about 30 s, not after Linux's default of more than two
// minutes, and without a SOAP call), then TLS verified against the CA file
// as it is now (cas, nil without one) or the system's CAs, or, with a
// thumbprint and no CA file, against the thumbprint alone (one handshake;
// a self-signed vCenter certificate).
func dialTLS(t *http.Transport, opts Options, cas *caFile) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3,
	}}
	thumb := normalizeThumbprint(opts.Thumbprint)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		cfg := t.TLSClientConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		if cas != nil {
			roots, err := cas.roots()
			if err != nil {
				return nil, err
			}
			cfg.RootCAs = roots
		}
		if thumb != "" && opts.CAFile == "" && !opts.Insecure {
			cfg.InsecureSkipVerify = true
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return fmt.Errorf("host %q sent no certificate", addr)
				}
				c := cs.PeerCertificates[0]
				if thumb != soap.ThumbprintSHA1(c) && thumb != soap.ThumbprintSHA256(c) {
					return fmt.Errorf("host %q thumbprint does not match %q (it is %s)", addr, thumb, soap.ThumbprintSHA1(c))
				}
				return nil
			}
		}
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		conn := tls.Client(raw, cfg)
		if err := conn.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			if cas != nil {
				return nil, caHint(err, cas.path)
			}
			return nil, err
		}
		return conn, nil
	}
}

// normalizeThumbprint writes a thumbprint as vSphere does: upper-case hex
// pairs joined by colons ("ab cd…", "abcd…" and "AB:CD:…" are the same).
func normalizeThumbprint(s string) string {
	hex := strings.Map(func(r rune) rune {
		switch {
		case r >= '0' && r <= '9', r >= 'A' && r <= 'F':
			return r
		case r >= 'a' && r <= 'f':
			return r - 'a' + 'A'
		}
		return -1
	}, s)
	var b strings.Builder
	for i := 0; i+1 < len(hex); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(hex[i : i+2])
	}
	return b.String()
}

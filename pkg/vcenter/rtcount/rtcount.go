// Package rtcount counts a vCenter client's HTTP round trips (every SOAP
// call, and the service-version reads) at its transport, for the tests and
// benchmarks that hold the driver to a budget of vCenter calls:
//
//	var rt rtcount.Counter
//	vcenter.New(ctx, vcenter.Options{..., WrapTransport: rt.Wrap})
//	before := rt.Count(); ...; calls := rt.Count() - before
package rtcount

import (
	"io"
	"net/http"
	"sync/atomic"
)

// Counter counts the requests of the transports it wraps. The zero value
// is ready to use.
type Counter struct {
	n     atomic.Int64
	bytes atomic.Int64
}

// Wrap returns next, counting each request; it fits
// vcenter.Options.WrapTransport.
func (c *Counter) Wrap(next http.RoundTripper) http.RoundTripper {
	return counting{c: c, next: next}
}

// Count is the number of requests so far.
func (c *Counter) Count() int64 { return c.n.Load() }

// Bytes is the number of response body bytes read so far: what the
// answers cost, where a count of calls does not show that one answer
// grew (a listing of everything instead of one volume's).
func (c *Counter) Bytes() int64 { return c.bytes.Load() }

type counting struct {
	c    *Counter
	next http.RoundTripper
}

func (t counting) RoundTrip(r *http.Request) (*http.Response, error) {
	t.c.n.Add(1)
	res, err := t.next.RoundTrip(r)
	if res != nil && res.Body != nil {
		res.Body = &countingBody{ReadCloser: res.Body, n: &t.c.bytes}
	}
	return res, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

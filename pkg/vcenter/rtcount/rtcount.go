// Package rtcount counts a vCenter client's HTTP round trips (every SOAP
// call, and the service-version reads) at its transport, for the tests and
// benchmarks that hold the driver to a budget of vCenter calls:
//
//	var rt rtcount.Counter
//	vcenter.New(ctx, vcenter.Options{..., WrapTransport: rt.Wrap})
//	before := rt.Count(); ...; calls := rt.Count() - before
package rtcount

import (
	"net/http"
	"sync/atomic"
)

// Counter counts the requests of the transports it wraps. The zero value
// is ready to use.
type Counter struct {
	n atomic.Int64
}

// Wrap returns next, counting each request; it fits
// vcenter.Options.WrapTransport.
func (c *Counter) Wrap(next http.RoundTripper) http.RoundTripper {
	return counting{c: c, next: next}
}

// Count is the number of requests so far.
func (c *Counter) Count() int64 { return c.n.Load() }

type counting struct {
	c    *Counter
	next http.RoundTripper
}

func (t counting) RoundTrip(r *http.Request) (*http.Response, error) {
	t.c.n.Add(1)
	return t.next.RoundTrip(r)
}

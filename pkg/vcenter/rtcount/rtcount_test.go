package rtcount

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCountsEveryRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	var c Counter
	client := &http.Client{Transport: c.Wrap(http.DefaultTransport)}
	for i := 0; i < 3; i++ {
		res, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	if got := c.Count(); got != 3 {
		t.Fatalf("Count() = %d after 3 requests", got)
	}
}

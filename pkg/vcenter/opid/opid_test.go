package opid

import (
	"strings"
	"testing"
)

func TestNewParses(t *testing.T) {
	id := New("cluster-a", Create, "pvc-1")
	tok, ok := Parse(id)
	if !ok {
		t.Fatalf("Parse(%q) failed", id)
	}
	if tok.Cluster != Tag("cluster-a") || tok.Op != Create || tok.Key != Tag("pvc-1") {
		t.Errorf("Parse(%q) = %+v", id, tok)
	}
	if other := New("cluster-a", Create, "pvc-1"); other == id {
		t.Errorf("two calls got the same operation ID %q", id)
	}
	if len(id) > 40 {
		t.Errorf("operation ID %q is %d characters", id, len(id))
	}
	// vCenter may put something around it.
	if tok2, ok := Parse("opid-7f-" + id + "-01"); !ok || tok2 != tok {
		t.Errorf("Parse with a prefix and suffix = %+v, %v", tok2, ok)
	}
	if Tag("cluster-a") == Tag("cluster-b") {
		t.Error("two clusters, one tag")
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{"", "3f2c1a9b", "vcsi-", "vcsi-xyz-create-00000000", "vcsi-00000000--00000000", "vcsi-0000000-create-00000000", strings.Repeat("vcsi", 3)} {
		if tok, ok := Parse(s); ok {
			t.Errorf("Parse(%q) = %+v, want nothing", s, tok)
		}
	}
}

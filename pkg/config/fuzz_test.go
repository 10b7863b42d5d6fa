package config

import (
	"strings"
	"testing"
)

// FuzzParse: no file makes Parse panic, and no error quotes the password
// (issue 11, finding 8: the INI parser's errors quote the line they could
// not read).
func FuzzParse(f *testing.F) {
	f.Add("[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = \"Secret-Pw-9f3\"\nthumbprint = \"AB:CD\"\n")
	f.Add("[Global]\ncluster-id = c\nuser = u\npassword: Secret-Pw-9f3\n")
	f.Add("[Global\npassword = Secret-Pw-9f3\n")
	f.Add("[VirtualCenter \"a\"]\n[VirtualCenter \"b\"]\npassword = \"Secret-Pw-9f3\n")
	f.Add("[Labels]\ntopology-categories = \"k8s-zone\"\n[Global]\ncluster-id=x\npassword=Secret-Pw-9f3\nport=70000\n")
	f.Fuzz(func(t *testing.T, file string) {
		_, err := Parse(strings.NewReader(file), "csi-vsphere.conf")
		if err == nil {
			return
		}
		for _, line := range strings.Split(file, "\n") {
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				k, v, ok = strings.Cut(line, ":")
			}
			v = strings.Trim(strings.TrimSpace(v), `"`)
			if ok && strings.EqualFold(strings.TrimSpace(k), "password") && len(v) >= 8 && strings.Contains(err.Error(), v) {
				t.Fatalf("the error quotes the password %q: %v", v, err)
			}
		}
	})
}

package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
)

const thumb = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD"

// writeCA writes a self-signed certificate as PEM and returns its path.
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParse(t *testing.T) {
	t.Parallel()
	ca := writeCA(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)

	tests := []struct {
		name    string
		ini     string
		want    *Config
		wantErr []string // substrings of the error, all of them
	}{
		{
			name: "upstream file, values quoted, global defaults inherited",
			ini: `
[Global]
cluster-id = "prod-1"
user = "k8s@vsphere.local"
password = "s3cr#t;x"
port = "443"
insecure-flag = "false"
thumbprint = "` + thumb + `"

[VirtualCenter "vc.example.com"]
datacenters = "dc-1, dc-2"

[Labels]
topology-categories = "k8s-region, k8s-zone"
`,
			want: &Config{Source: "csi-vsphere.conf", ClusterID: "prod-1",
				VirtualCenter: VirtualCenter{Host: "vc.example.com", Port: 443, User: "k8s@vsphere.local",
					Password: "s3cr#t;x", Thumbprint: thumb, Datacenters: []string{"dc-1", "dc-2"}},
				TopologyCategories: []string{"k8s-region", "k8s-zone"}},
		},
		{
			name: "unquoted values, VirtualCenter overrides Global, keys in any case",
			ini: `
[Global]
cluster-id = c1
user = global-user
password = global-pw
insecure-flag = true
port = 8443

[VirtualCenter "10.0.0.1"]
User = vc-user
Password = vc-pw # a comment
port = 443
ca-file = ` + ca + `
insecure-flag = 0
`,
			want: &Config{Source: "csi-vsphere.conf", ClusterID: "c1",
				VirtualCenter: VirtualCenter{Host: "10.0.0.1", Port: 443, User: "vc-user", Password: "vc-pw", CAFile: ca}},
		},
		{
			name: "insecure, default port",
			ini:  "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\ninsecure-flag = \"true\"\n",
			want: &Config{Source: "csi-vsphere.conf", ClusterID: "c",
				VirtualCenter: VirtualCenter{Host: "vc", Port: 443, User: "u", Password: "p", Insecure: true}},
		},
		{
			name: "upstream keys honoured: cluster-distribution, file share targets, snapshot limits",
			ini: "[Global]\ncluster-id = c\ncluster-distribution = \"OpenShift\"\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\ninsecure-flag = true\n" +
				"targetvSANFileShareClusters = \"vsan-a, vsan-b\"\ntargetvSANFileShareDatastoreURLs = \"ds:///vmfs/volumes/vsan:1/\"\n" +
				"[NetPermissions \"A\"]\nips = \"*\"\n[Snapshot]\nglobal-max-snapshots-per-block-volume = 5\ngranular-max-snapshots-per-block-volume-vsan = 7\ngranular-max-snapshots-per-block-volume-vvol = 2\n",
			want: &Config{NetPermissions: []NetPermission{{Name: "A", IPs: "*", Permissions: "READ_WRITE"}}, Source: "csi-vsphere.conf", ClusterID: "c",
				ClusterDistribution: "OpenShift", Snapshots: SnapshotLimits{Global: 5, VSAN: 7, VVOL: 2},
				VirtualCenter: VirtualCenter{Host: "vc", Port: 443, User: "u", Password: "p", Insecure: true,
					FileShareClusters: []string{"vsan-a", "vsan-b"}, FileShareDatastoreURLs: []string{"ds:///vmfs/volumes/vsan:1/"}}},
		},
		{
			name: "upstream keys that tune what this driver does not have are accepted",
			ini: "[Global]\ncluster-id = c\nquery-limit = 100\nlist-volume-threshold = 50\ncnsregistervolumes-cleanup-intervalinmin = 120\n" +
				"cnsvolumeoperationrequest-cleanup-intervalinmin = 1440\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\ninsecure-flag = true\n",
			want: &Config{Source: "csi-vsphere.conf", ClusterID: "c",
				VirtualCenter: VirtualCenter{Host: "vc", Port: 443, User: "u", Password: "p", Insecure: true}},
		},
		{
			name:    "supervisor-id refused",
			ini:     "[Global]\ncluster-id = c\nsupervisor-id = s\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\n",
			wantErr: []string{"[Global] supervisor-id: it is a setting of vSphere with Tanzu", "remove it"},
		},
		{
			name:    "legacy zone and region refused with what to write instead",
			ini:     "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\n[Labels]\nzone = k8s-zone\n",
			wantErr: []string{"[Labels] zone:", "topology-categories"},
		},
		{
			name: "migration-datastore-url read",
			ini:  "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\ninsecure-flag = true\nmigration-datastore-url = ds:///vmfs/volumes/a/\n",
			want: &Config{Source: "csi-vsphere.conf", ClusterID: "c",
				VirtualCenter: VirtualCenter{Host: "vc", Port: 443, User: "u", Password: "p", Insecure: true, MigrationDatastoreURL: "ds:///vmfs/volumes/a/"}},
		},
		{
			name:    "auth check interval refused",
			ini:     "[Global]\ncluster-id = c\ncsi-auth-check-intervalinmin = 5\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\n",
			wantErr: []string{"csi-auth-check-intervalinmin:", "grant the driver's user"},
		},
		{
			name:    "TopologyCategory section refused",
			ini:     "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\n[TopologyCategory \"k8s-zone\"]\nlabel = topology.kubernetes.io/zone\n",
			wantErr: []string{"[TopologyCategory \"k8s-zone\"]: custom topology labels"},
		},
		{
			name:    "GC section refused",
			ini:     "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\n[GC]\nendpoint = x\n",
			wantErr: []string{"[GC]: it is a setting of vSphere with Tanzu"},
		},
		{
			name:    "snapshot limit beyond vSphere's",
			ini:     "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\n[Snapshot]\nglobal-max-snapshots-per-block-volume = 33\n",
			wantErr: []string{"[Snapshot] global-max-snapshots-per-block-volume: \"33\" is not a number of snapshots from 1 to 32"},
		},
		{
			name:    "missing cluster-id",
			ini:     "[Global]\nuser = u\n[VirtualCenter \"vc\"]\npassword = p\ninsecure-flag = true\n",
			wantErr: []string{"csi-vsphere.conf: [Global] cluster-id: is missing"},
		},
		{
			name:    "missing Global",
			ini:     "[VirtualCenter \"vc\"]\nuser = u\npassword = p\n",
			wantErr: []string{"[Global]", "missing"},
		},
		{
			name:    "missing user",
			ini:     "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\npassword = p\ninsecure-flag = true\n",
			wantErr: []string{`csi-vsphere.conf: [VirtualCenter "vc"] user: is missing`},
		},
		{
			name:    "missing password",
			ini:     "[Global]\ncluster-id = c\nuser = u\n[VirtualCenter \"vc\"]\ninsecure-flag = true\n",
			wantErr: []string{`[VirtualCenter "vc"] password: is missing`},
		},
		{
			name:    "bad port in VirtualCenter",
			ini:     "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\nport = https\ninsecure-flag = true\n",
			wantErr: []string{`[VirtualCenter "vc"] port: "https" is not a port number`},
		},
		{
			name:    "port out of range in Global",
			ini:     "[Global]\ncluster-id = c\nport = 70000\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\ninsecure-flag = true\n",
			wantErr: []string{`[Global] port: "70000" is not a port number`},
		},
		{
			name:    "bad insecure-flag",
			ini:     "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\ninsecure-flag = maybe\n",
			wantErr: []string{`insecure-flag: "maybe" is not true or false`},
		},
		{
			name:    "ca-file unreadable",
			ini:     "[Global]\ncluster-id = c\nca-file = /nonexistent/ca.pem\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\n",
			wantErr: []string{"[Global] ca-file: can't be read", "/nonexistent/ca.pem"},
		},
		{
			name:    "ca-file not PEM",
			ini:     "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\nca-file = " + notPEM + "\n",
			wantErr: []string{"ca-file:", "no PEM certificate"},
		},
		{
			name:    "bad thumbprint",
			ini:     "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\nthumbprint = AA:BB\n",
			wantErr: []string{`thumbprint: "AA:BB": not a SHA-1 or SHA-256 fingerprint`},
		},
		{
			name:    "unknown key names the accepted ones",
			ini:     "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\ninsecure-flag = true\ndatacenter = dc\n",
			wantErr: []string{`[VirtualCenter "vc"] datacenter: unknown key`, "user, password, port, datacenters, insecure-flag, ca-file, thumbprint"},
		},
		{
			name:    "unknown key in Labels",
			ini:     "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\ninsecure-flag = true\n[Labels]\ntopology = x\n",
			wantErr: []string{"[Labels] topology: unknown key", "topology-categories"},
		},
		{
			name:    "unknown section",
			ini:     "[Global]\ncluster-id = c\n[Workspace]\nserver = x\n",
			wantErr: []string{"[Workspace]", "unknown section"},
		},
		{
			name:    "two vCenters",
			ini:     "[Global]\ncluster-id = c\nuser = u\npassword = p\ninsecure-flag = true\n[VirtualCenter \"a\"]\n[VirtualCenter \"b\"]\n",
			wantErr: []string{"2 VirtualCenter sections (a, b)", "exactly one"},
		},
		{
			name:    "no vCenter",
			ini:     "[Global]\ncluster-id = c\n",
			wantErr: []string{`no [VirtualCenter "host"] section`},
		},
		{
			name:    "VirtualCenter without a host",
			ini:     "[Global]\ncluster-id = c\n[VirtualCenter]\nuser = u\n",
			wantErr: []string{"[VirtualCenter]: names no vCenter"},
		},
		{
			name:    "key outside a section",
			ini:     "cluster-id = c\n[Global]\n",
			wantErr: []string{"cluster-id: is outside any section"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.ini), "csi-vsphere.conf")
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Parse = %v, want an error containing %q", got, tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "s3cr") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.want.NetPermissions == nil {
				tt.want.NetPermissions = DefaultNetPermissions // no sections: everyone read-write
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse =\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "csi-vsphere.conf")
	os.WriteFile(path, []byte("[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\nport = x\ninsecure-flag = true\n"), 0o600)
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+": [VirtualCenter \"vc\"] port:") {
		t.Errorf("Load = %v, want an error naming %s, the section and the key", err, path)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "absent.conf")); err == nil || !strings.Contains(err.Error(), "absent.conf") {
		t.Errorf("Load of a missing file = %v, want an error naming it", err)
	}
}

// TestPasswordNeverPrinted prints a Config every way the driver might.
func TestPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	const pw = "Very$ecret-42"
	c, err := Parse(strings.NewReader("[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = \""+pw+"\"\ninsecure-flag = true\n"), "x.conf")
	if err != nil {
		t.Fatal(err)
	}
	if c.VirtualCenter.Password.Reveal() != pw {
		t.Fatalf("Reveal = %q, want the password", c.VirtualCenter.Password.Reveal())
	}
	var outs []string
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		outs = append(outs, fmt.Sprintf(f, c), fmt.Sprintf(f, *c), fmt.Sprintf(f, c.VirtualCenter))
	}
	j, _ := json.Marshal(c)
	outs = append(outs, string(j))
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "cfg", c, "vc", c.VirtualCenter, "pw", c.VirtualCenter.Password)
	outs = append(outs, buf.String())
	var logged string
	logr := funcr.New(func(prefix, args string) { logged += args }, funcr.Options{})
	logr.Info("config", "cfg", c, "pw", c.VirtualCenter.Password)
	outs = append(outs, logged)
	for _, o := range outs {
		if strings.Contains(o, pw) {
			t.Errorf("the password shows in %q", o)
		}
	}
	if !strings.Contains(c.String(), "<redacted>") {
		t.Errorf("String() = %q, want the password shown as <redacted>", c.String())
	}
}

// TestSystemRootsWhenNothingPinned: without ca-file, thumbprint or
// insecure-flag the file is valid and TLS stays verified (system CAs).
func TestSystemRootsWhenNothingPinned(t *testing.T) {
	t.Parallel()
	c, err := Parse(strings.NewReader("[Global]\ncluster-id = c\n[VirtualCenter \"vc.example.com\"]\nuser = u\npassword = p\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if vc := c.VirtualCenter; vc.Insecure || vc.CAFile != "" || vc.Thumbprint != "" {
		t.Fatalf("got %+v, want verification against the system's CAs", vc)
	}
}

// TestThumbprintForms: a thumbprint in lower case or without colons is the
// same thumbprint, written as vSphere writes it (issue 11, finding 9: it
// used to pass the check and then fail the login).
func TestThumbprintForms(t *testing.T) {
	t.Parallel()
	want := "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01"
	for _, form := range []string{want, strings.ToLower(want), strings.ReplaceAll(strings.ToLower(want), ":", ""), strings.ReplaceAll(want, ":", " ")} {
		c, err := Parse(strings.NewReader("[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\nthumbprint = \""+form+"\"\n"), "t.conf")
		if err != nil {
			t.Fatalf("%q: %v", form, err)
		}
		if c.VirtualCenter.Thumbprint != want {
			t.Errorf("%q became %q, want %q", form, c.VirtualCenter.Thumbprint, want)
		}
	}
}

// TestParseErrorsNeverQuoteThePassword (finding 8): the INI parser quotes
// a line it can't read; the driver's message says where, not what.
func TestParseErrorsNeverQuoteThePassword(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword: Hunter2-secret\n",
		"[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = \"Hunter2-secret\n",
		"[Global\npassword = Hunter2-secret\n",
	} {
		_, err := Parse(strings.NewReader(bad), "t.conf")
		if err == nil {
			continue // the parser took it; nothing to quote
		}
		if strings.Contains(err.Error(), "Hunter2") {
			t.Errorf("the error quotes the password: %v", err)
		}
	}
	_, err := Parse(strings.NewReader("[Global]\ncluster-id = c\npassword: Hunter2-secret\n"), "t.conf")
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("want the line number of the bad line: %v", err)
	}
}

// TestNetPermissions (issue 12): [NetPermissions "name"] sections in the
// file's order, upstream's defaults for missing keys, bad values refused
// naming the section and the key.
func TestNetPermissions(t *testing.T) {
	t.Parallel()
	head := "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\ninsecure-flag = true\n"
	c, err := Parse(strings.NewReader(head+`
[NetPermissions "B"]
ips = "10.20.0.0/16"
permissions = "READ_ONLY"
rootsquash = true
[NetPermissions "A"]
ips = "10.20.30.40"
permissions = "no_access"
[NetPermissions "C"]
`), "t.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := []NetPermission{
		{Name: "B", IPs: "10.20.0.0/16", Permissions: "READ_ONLY", RootSquash: true},
		{Name: "A", IPs: "10.20.30.40", Permissions: "NO_ACCESS"},
		{Name: "C", IPs: "*", Permissions: "READ_WRITE"},
	}
	if !reflect.DeepEqual(c.NetPermissions, want) {
		t.Errorf("got %+v, want %+v (in the file's order)", c.NetPermissions, want)
	}
	for _, tc := range []struct{ body, want string }{
		{"[NetPermissions \"X\"]\nips = \"10.0.0.0/33\"\n", `[NetPermissions "X"] ips: "10.0.0.0/33" is not`},
		{"[NetPermissions \"X\"]\npermissions = \"RW\"\n", `[NetPermissions "X"] permissions: "RW" is not READ_WRITE`},
		{"[NetPermissions \"X\"]\nrootsquash = \"maybe\"\n", `[NetPermissions "X"] rootsquash: "maybe"`},
		{"[NetPermissions \"X\"]\nip = \"*\"\n", `[NetPermissions "X"] ip: unknown key`},
		{"[NetPermissions]\nips = \"*\"\n", `names no permission set`},
	} {
		if _, err := Parse(strings.NewReader(head+tc.body), "t.conf"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
}

// upstreamKeyList is every key of the upstream driver's csi-vsphere.conf
// (kubernetes-sigs/vsphere-csi-driver pkg/common/config/types.go, the gcfg
// tags of Global, VirtualCenter, Labels, NetPermissions and Snapshot, and
// targetvSANFileShareDatastoreURLs, which it read until #2653), with a
// value of the right kind.
var upstreamKeyList = map[string][]string{
	"Global": {"cluster-id = c", "supervisor-id = s", "user = u", "password = p", "port = 443", "insecure-flag = true",
		"ca-file = /nonexistent", "thumbprint = x", "datacenters = dc", "cnsregistervolumes-cleanup-intervalinmin = 1",
		"cnspvcprotection-cleanup-intervalinmin = 1", "volumemigration-cr-cleanup-intervalinmin = 1", "cluster-distribution = d",
		"csi-auth-check-intervalinmin = 1", "cnsvolumeoperationrequest-cleanup-intervalinmin = 1",
		"csi-fetch-preferred-datastores-intervalinmin = 1", "query-limit = 1", "list-volume-threshold = 1"},
	"VirtualCenter \"vc\"": {"user = u", "password = p", "port = 443", "ca-file = /nonexistent", "thumbprint = x", "datacenters = dc",
		"targetvSANFileShareClusters = c", "targetvSANFileShareDatastoreURLs = ds:///x/", "migration-datastore-url = ds:///x/", "insecure-flag = true"},
	"Labels":                 {"zone = z", "region = r", "topology-categories = k8s-zone"},
	"NetPermissions \"A\"":   {"ips = *", "permissions = READ_WRITE", "rootsquash = false"},
	"Snapshot":               {"global-max-snapshots-per-block-volume = 3", "granular-max-snapshots-per-block-volume-vsan = 3", "granular-max-snapshots-per-block-volume-vvol = 3"},
	"GC":                     {"endpoint = e"},
	"TopologyCategory \"z\"": {"label = l"},
}

// TestEveryUpstreamKeyHasADecision: each key of the upstream driver's file
// is read, accepted as inert, or refused saying what to do: never "unknown
// key", which would leave an admin switching drivers with no advice.
func TestEveryUpstreamKeyHasADecision(t *testing.T) {
	base := "[Global]\ncluster-id = c\n[VirtualCenter \"vc\"]\nuser = u\npassword = p\ninsecure-flag = true\n"
	for section, lines := range upstreamKeyList {
		for _, line := range lines {
			ini := base + "[" + section + "]\n" + line + "\n"
			if strings.HasPrefix(section, "Global") || strings.HasPrefix(section, "VirtualCenter") {
				// Into the existing section (a second one would be a
				// second vCenter, or merged by the INI library).
				ini = strings.Replace(base, "["+section+"]\n", "["+section+"]\n"+line+"\n", 1)
			}
			_, err := Parse(strings.NewReader(ini), "csi-vsphere.conf")
			if err != nil && (strings.Contains(err.Error(), "unknown key") || strings.Contains(err.Error(), "unknown section")) {
				t.Errorf("[%s] %s: %v; want it read, accepted or refused with advice", section, line, err)
			}
		}
	}
}

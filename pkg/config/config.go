// Package config reads csi-vsphere.conf, the INI file vSphere admins already
// have for the upstream vSphere CSI driver:
//
//	[Global]
//	cluster-id = "prod-cluster-1"
//	insecure-flag = "false"            # defaults for every VirtualCenter
//	ca-file = /etc/ssl/vcenter/ca.pem
//	thumbprint = "AA:BB:…"
//	user = "k8s@vsphere.local"
//	password = "…"
//	port = "443"
//	datacenters = "dc-1, dc-2"
//
//	[VirtualCenter "vc.example.com"]  # exactly one, for now
//	user = …                           # each key here overrides [Global]
//	password = …
//	port = …
//	datacenters = …
//	insecure-flag = …
//	ca-file = …
//	thumbprint = …
//
//	[Labels]
//	topology-categories = "k8s-region, k8s-zone"
//
//	[Snapshot]
//	global-max-snapshots-per-block-volume = 3
//
// Every key of the upstream driver's file is read with the same meaning,
// accepted where it tunes something this driver does not have (and the
// outcome is the same), or refused at start saying what to do
// (upstreamKeys below; docs/SWITCHING.md has the table).
//
// Values may be quoted or not; key names are case-insensitive. The password
// never appears in what a Config prints or logs. vCenter's TLS certificate
// is verified unless insecure-flag is true: against ca-file, else against
// thumbprint (SHA-1 or SHA-256), else against the system's trusted CAs.
package config

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/ini.v1"
	"k8s.io/klog/v2"
)

// Config is what the driver needs from csi-vsphere.conf.
type Config struct {
	// Source names where the configuration came from (the file's path).
	Source string
	// ClusterID is recorded on every CNS volume this cluster creates.
	ClusterID string
	// VirtualCenter is the one vCenter of this cluster.
	VirtualCenter VirtualCenter
	// TopologyCategories are the vSphere tag categories that make the
	// topology (e.g. k8s-region, k8s-zone); empty when there is none.
	TopologyCategories []string
	// NetPermissions are who may mount file volumes (ReadWriteMany), in
	// the file's order; without sections, every address read-write with
	// no root squash (upstream's default).
	NetPermissions []NetPermission
	// ClusterDistribution is the Kubernetes distribution CNS records for
	// the cluster (cluster-distribution: "OpenShift", "TKGI", ...), shown
	// in the vSphere Client; "" when not given.
	ClusterDistribution string
	// Snapshots are the [Snapshot] limits per volume; 0 when not given.
	Snapshots SnapshotLimits
}

// SnapshotLimits are the most snapshots a block volume may have: Global
// for every volume, VSAN and VVOL for volumes on datastores of that type
// (0: Global applies).
type SnapshotLimits struct {
	Global, VSAN, VVOL int
}

// MaxSnapshotsLimit is vSphere's limit of snapshots per first-class disk.
const MaxSnapshotsLimit = 32

// NetPermission is one [NetPermissions "name"] section: the NFS access of
// the client addresses ips to the file shares of file volumes.
type NetPermission struct {
	Name        string
	IPs         string // "*", an address or a CIDR range
	Permissions string // READ_WRITE, READ_ONLY or NO_ACCESS
	RootSquash  bool
}

// DefaultNetPermissions is what applies without [NetPermissions] sections.
var DefaultNetPermissions = []NetPermission{{Name: "default", IPs: "*", Permissions: "READ_WRITE"}}

// VirtualCenter is one [VirtualCenter "host"] section, with the [Global]
// values it inherits filled in.
type VirtualCenter struct {
	Host     string
	Port     int
	User     string
	Password Secret
	// TLS is verified unless Insecure: against CAFile when set, else against
	// Thumbprint.
	Insecure    bool
	CAFile      string
	Thumbprint  string
	Datacenters []string
	// FileShareClusters are the vSAN clusters file volumes' shares may go
	// to (targetvSANFileShareClusters), FileShareDatastoreURLs the
	// datastores (targetvSANFileShareDatastoreURLs); empty: any with vSAN
	// File Service.
	FileShareClusters      []string
	FileShareDatastoreURLs []string
	// MigrationDatastoreURL is where disks of translated in-tree
	// StorageClasses that name no datastore go (migration-datastore-url).
	MigrationDatastoreURL string
}

// DefaultPort is vCenter's HTTPS port.
const DefaultPort = 443

// Secret is a string that never prints: fmt, klog/logr and slog all show
// "<redacted>". Reveal gives the value.
type Secret string

const redacted = "<redacted>"

// Reveal returns the secret's value, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// MarshalLog is what logr (klog's structured logging) shows.
func (s Secret) MarshalLog() any { return s.String() }

// LogValue is what log/slog shows.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps JSON and YAML encoders from writing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String describes the configuration without the password.
func (c *Config) String() string {
	vc := c.VirtualCenter
	return fmt.Sprintf("cluster-id=%q vCenter=%s:%d user=%q password=%s insecure=%t ca-file=%q thumbprint=%q datacenters=%q topology-categories=%q",
		c.ClusterID, vc.Host, vc.Port, vc.User, vc.Password, vc.Insecure, vc.CAFile, vc.Thumbprint, vc.Datacenters, c.TopologyCategories)
}

// LogValue is what log/slog shows of a Config.
func (c *Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalLog is what logr (klog) shows of a Config.
func (c *Config) MarshalLog() any { return c.String() }

// Sections and keys.
const (
	sectionGlobal        = "Global"
	sectionVirtualCenter = "VirtualCenter"
	sectionLabels        = "Labels"
	sectionNetPerm       = "NetPermissions"
	sectionSnapshot      = "Snapshot"

	keyClusterID          = "cluster-id"
	keyInsecure           = "insecure-flag"
	keyCAFile             = "ca-file"
	keyThumbprint         = "thumbprint"
	keyUser               = "user"
	keyPassword           = "password"
	keyPort               = "port"
	keyDatacenters        = "datacenters"
	keyTopologyCategories = "topology-categories"
	keyClusterDistrib     = "cluster-distribution"
	keyFileShareClusters  = "targetvsanfileshareclusters"      // upstream: targetvSANFileShareClusters
	keyFileShareDSURLs    = "targetvsanfilesharedatastoreurls" // upstream: targetvSANFileShareDatastoreURLs
	keyMigrationDSURL     = "migration-datastore-url"
	keySnapGlobal         = "global-max-snapshots-per-block-volume"
	keySnapVSAN           = "granular-max-snapshots-per-block-volume-vsan"
	keySnapVVOL           = "granular-max-snapshots-per-block-volume-vvol"
)

// The keys each section accepts.
var (
	connKeys     = []string{keyUser, keyPassword, keyPort, keyDatacenters, keyInsecure, keyCAFile, keyThumbprint}
	vcKeys       = append([]string{keyFileShareClusters, keyFileShareDSURLs, keyMigrationDSURL}, connKeys...)
	globalKeys   = append([]string{keyClusterID, keyClusterDistrib}, connKeys...)
	labelKeys    = []string{keyTopologyCategories}
	netKeys      = []string{"ips", "permissions", "rootsquash"}
	snapshotKeys = []string{keySnapGlobal, keySnapVSAN, keySnapVVOL}
)

// upstreamKey is what this driver does with a key (or section) of the
// upstream driver's csi-vsphere.conf that it does not read as its own
// (pkg/common/config/types.go upstream). One of the two is set.
type upstreamKey struct {
	// refuse: the file is refused at start; this says why and what to do
	// (the key asks for something this driver does not do, and ignoring
	// it would change the outcome without a word).
	refuse string
	// inert: accepted with no effect; this says why the outcome is the
	// same (what it tunes does not exist here).
	inert string
}

const (
	inertCRD = "it tunes the cleanup of a custom resource of the upstream driver that this driver does not create"
	tanzu    = "it is a setting of vSphere with Tanzu (Supervisor or TKG guest clusters); this driver serves vanilla Kubernetes clusters: remove it"
)

var upstreamKeys = map[string]map[string]upstreamKey{
	sectionGlobal: {
		"supervisor-id": {refuse: tanzu},
		"cnsregistervolumes-cleanup-intervalinmin":        {inert: inertCRD + " (CnsRegisterVolume: static volumes are PVs naming the volume, docs/SWITCHING.md)"},
		"cnspvcprotection-cleanup-intervalinmin":          {inert: inertCRD + " (CnsPVCProtection, a Supervisor resource)"},
		"volumemigration-cr-cleanup-intervalinmin":        {inert: inertCRD + " (CnsVSphereVolumeMigration, of in-tree volume migration)"},
		"cnsvolumeoperationrequest-cleanup-intervalinmin": {inert: inertCRD + " (CnsVolumeOperationRequest: this driver settles interrupted operations from vCenter's tasks, docs/RELIABILITY.md)"},
		"query-limit":           {inert: "it sizes the upstream driver's CNS queries for ListVolumes; this driver pages its queries itself (500 volumes) and ListVolumes by max_entries"},
		"list-volume-threshold": {inert: "it is a heuristic of the upstream driver's ListVolumes cache; this driver's ListVolumes reads CNS at each call"},
		"csi-auth-check-intervalinmin": {refuse: "the upstream driver leaves out of placement the datastores its user lacks privileges on, re-read at this interval; " +
			"this driver does not pre-check privileges (vCenter answers NoPermission, reported as PermissionDenied naming the privilege): " +
			"grant the driver's user the documented privileges on every datastore compatible with your storage policies, then remove this key"},
		"csi-fetch-preferred-datastores-intervalinmin": {refuse: "preferred datastores per zone (the cns.vmware.topology-preferred-datastores tag) are not supported: " +
			"placement takes the policy's compatible datastores reachable from the zone's nodes, most free space first; remove this key"},
	},
	sectionLabels: {
		"zone":   {refuse: "zone and region are the upstream driver's deprecated topology settings: write topology-categories = \"<region category>, <zone category>\" instead; docs/SWITCHING.md"},
		"region": {refuse: "zone and region are the upstream driver's deprecated topology settings: write topology-categories = \"<region category>, <zone category>\" instead; docs/SWITCHING.md"},
	},
}

var upstreamSections = map[string]upstreamKey{
	"GC": {refuse: tanzu},
	"TopologyCategory": {refuse: "custom topology labels per tag category are not supported: nodes and volumes are labelled " +
		"topology.csi.vmware.com/<category> for each of topology-categories; remove the section"},
}

// Load reads and checks the configuration file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vSphere configuration: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse reads and checks a configuration; name (the file's path) is what
// error messages call it.
func Parse(r io.Reader, name string) (*Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	file, err := ini.LoadSources(ini.LoadOptions{
		InsensitiveKeys:           true,
		SpaceBeforeInlineComment:  true, // "pa#ss" is a password, "443 # https" a port and a comment
		UnescapeValueDoubleQuotes: true,
		KeyValueDelimiters:        "=",
		ChildSectionDelimiter:     "\x00", // "VirtualCenter \"10.0.0.1\"" has no parent sections
	}, data)
	if err != nil {
		return nil, fmt.Errorf("%s: not a valid INI file: %s", name, iniProblem(err, data))
	}
	p := parser{name: name}
	return p.parse(file)
}

// iniProblem says what is wrong with the file without quoting it: the
// INI parser's messages quote the offending line, which may be the
// password's (a line without "=", a stray quote).
func iniProblem(err error, data []byte) string {
	var nd ini.ErrDelimiterNotFound
	if errors.As(err, &nd) {
		bad := strings.TrimSpace(nd.Line)
		for i, line := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(line) == bad {
				return fmt.Sprintf("line %d has no \"=\" between a key and its value (or an unclosed quote)", i+1)
			}
		}
		return "a line has no \"=\" between a key and its value (or an unclosed quote)"
	}
	return fmt.Sprintf("the INI parser refused it (%T); check the section headers and the quoting", err)
}

type parser struct{ name string }

// errorf makes an error that names the file, the section and the key.
func (p parser) errorf(section, key, format string, args ...any) error {
	where := p.name
	if section != "" {
		where += ": [" + section + "]"
	}
	if key != "" {
		where += " " + key
	}
	return fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...))
}

func (p parser) parse(file *ini.File) (*Config, error) {
	var global, labels, snap *ini.Section
	var vcs, nets []*ini.Section
	var vcHosts []string
	for _, s := range file.Sections() {
		name := s.Name()
		kind, arg := splitSectionName(name)
		switch {
		case name == ini.DefaultSection:
			if len(s.Keys()) > 0 {
				return nil, p.errorf("", s.Keys()[0].Name(), "is outside any section: put it under [Global] or [VirtualCenter \"host\"]")
			}
		case strings.EqualFold(kind, sectionGlobal) && arg == "":
			global = s
		case strings.EqualFold(kind, sectionLabels) && arg == "":
			labels = s
		case strings.EqualFold(kind, sectionVirtualCenter):
			if arg == "" {
				return nil, p.errorf(name, "", "names no vCenter: write [VirtualCenter \"vcenter.example.com\"]")
			}
			vcs = append(vcs, s)
			vcHosts = append(vcHosts, arg)
		case strings.EqualFold(kind, sectionNetPerm):
			if arg == "" {
				return nil, p.errorf(name, "", "names no permission set: write [NetPermissions \"name\"]")
			}
			nets = append(nets, s)
		case strings.EqualFold(kind, sectionSnapshot) && arg == "":
			snap = s
		default:
			for k, u := range upstreamSections {
				if strings.EqualFold(k, kind) {
					return nil, p.errorf(name, "", "%s", u.refuse)
				}
			}
			return nil, p.errorf(name, "", "unknown section: the sections are [Global], [VirtualCenter \"host\"], [Labels], [Snapshot] and [NetPermissions \"name\"]")
		}
	}
	if global == nil {
		return nil, p.errorf(sectionGlobal, "", "missing: it must give %s", keyClusterID)
	}
	switch len(vcs) {
	case 0:
		return nil, p.errorf("", "", "no [VirtualCenter \"host\"] section: name the vCenter to use")
	case 1:
	default:
		return nil, p.errorf("", "", "%d VirtualCenter sections (%s): this driver works with exactly one vCenter for now",
			len(vcs), strings.Join(vcHosts, ", "))
	}
	for _, s := range []struct {
		sec  *ini.Section
		kind string
		keys []string
	}{{global, sectionGlobal, globalKeys}, {vcs[0], sectionVirtualCenter, vcKeys}, {labels, sectionLabels, labelKeys}, {snap, sectionSnapshot, snapshotKeys}} {
		if err := p.checkKeys(s.sec, s.kind, s.keys); err != nil {
			return nil, err
		}
	}

	c := &Config{Source: p.name}
	c.ClusterID = value(global, keyClusterID)
	if c.ClusterID == "" {
		return nil, p.errorf(sectionGlobal, keyClusterID, "is missing: set it to a name unique to this Kubernetes cluster (CNS records it on every volume)")
	}
	vc, err := p.virtualCenter(global, vcs[0], vcHosts[0])
	if err != nil {
		return nil, err
	}
	c.VirtualCenter = vc
	if labels != nil {
		c.TopologyCategories = list(value(labels, keyTopologyCategories))
	}
	c.ClusterDistribution = value(global, keyClusterDistrib)
	if c.Snapshots, err = p.snapshotLimits(snap); err != nil {
		return nil, err
	}
	if c.NetPermissions, err = p.netPermissions(nets); err != nil {
		return nil, err
	}
	return c, nil
}

// netPermissions reads the [NetPermissions "name"] sections in the file's
// order (which decides which one applies to an address in two ranges).
func (p parser) netPermissions(secs []*ini.Section) ([]NetPermission, error) {
	if len(secs) == 0 {
		return DefaultNetPermissions, nil
	}
	var out []NetPermission
	for _, s := range secs {
		if err := p.checkKeys(s, sectionNetPerm, netKeys); err != nil {
			return nil, err
		}
		_, name := splitSectionName(s.Name())
		np := NetPermission{Name: name, IPs: value(s, "ips"), Permissions: strings.ToUpper(value(s, "permissions"))}
		if np.IPs == "" {
			np.IPs = "*"
		}
		if np.IPs != "*" {
			if _, _, err := net.ParseCIDR(np.IPs); err != nil && net.ParseIP(np.IPs) == nil {
				return nil, p.errorf(s.Name(), "ips", "%q is not *, an IP address or a CIDR range such as 10.20.0.0/16", np.IPs)
			}
		}
		switch np.Permissions {
		case "":
			np.Permissions = "READ_WRITE"
		case "READ_WRITE", "READ_ONLY", "NO_ACCESS":
		default:
			return nil, p.errorf(s.Name(), "permissions", "%q is not READ_WRITE, READ_ONLY or NO_ACCESS", value(s, "permissions"))
		}
		if v := value(s, "rootsquash"); v != "" {
			b, err := parseBool(v)
			if err != nil {
				return nil, p.errorf(s.Name(), "rootsquash", "%q is not true or false", v)
			}
			np.RootSquash = b
		}
		out = append(out, np)
	}
	return out, nil
}

// splitSectionName splits `VirtualCenter "host"` into its kind and its
// argument (unquoted).
func splitSectionName(name string) (kind, arg string) {
	kind, arg, _ = strings.Cut(strings.TrimSpace(name), " ")
	arg = strings.TrimSpace(arg)
	if u, err := strconv.Unquote(arg); err == nil {
		arg = u
	}
	return kind, strings.TrimSpace(arg)
}

func (p parser) checkKeys(s *ini.Section, kind string, accepted []string) error {
	if s == nil {
		return nil
	}
	for _, k := range s.Keys() {
		name := k.Name()
		switch {
		case slices.Contains(accepted, name):
		case upstreamKeys[kind][name].refuse != "":
			return p.errorf(s.Name(), name, "%s", upstreamKeys[kind][name].refuse)
		case upstreamKeys[kind][name].inert != "":
			klog.InfoS("A key of the upstream driver's file that has no effect here", "file", p.name, "section", s.Name(), "key", name,
				"why", upstreamKeys[kind][name].inert)
		default:
			return p.errorf(s.Name(), name, "unknown key: [%s] accepts %s", kind, strings.Join(accepted, ", "))
		}
	}
	return nil
}

// value is the key's value, "" when absent.
func value(s *ini.Section, key string) string {
	if s == nil {
		return ""
	}
	for _, k := range s.Keys() {
		if k.Name() == key {
			return strings.TrimSpace(k.Value())
		}
	}
	return ""
}

// inherited is the key's value in the VirtualCenter section, else in
// Global; it says which section it came from.
func inherited(global, vc *ini.Section, key string) (string, string) {
	if v := value(vc, key); v != "" {
		return v, vc.Name()
	}
	return value(global, key), global.Name()
}

func (p parser) virtualCenter(global, s *ini.Section, host string) (VirtualCenter, error) {
	vc := VirtualCenter{Host: host, Port: DefaultPort}
	var where string
	vc.User, where = inherited(global, s, keyUser)
	if vc.User == "" {
		return vc, p.errorf(s.Name(), keyUser, "is missing (here or in [Global]): the vCenter user the driver logs in as")
	}
	var pw string
	pw, _ = inherited(global, s, keyPassword)
	if pw == "" {
		return vc, p.errorf(s.Name(), keyPassword, "is missing (here or in [Global]): the password of %s", vc.User)
	}
	vc.Password = Secret(pw)
	if v, where := inherited(global, s, keyPort); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return vc, p.errorf(where, keyPort, "%q is not a port number (1-65535)", v)
		}
		vc.Port = n
	}
	if v, where := inherited(global, s, keyInsecure); v != "" {
		b, err := parseBool(v)
		if err != nil {
			return vc, p.errorf(where, keyInsecure, "%q is not true or false", v)
		}
		vc.Insecure = b
	}
	vc.CAFile, where = inherited(global, s, keyCAFile)
	if vc.CAFile != "" {
		if err := checkCAFile(vc.CAFile); err != nil {
			return vc, p.errorf(where, keyCAFile, "%v", err)
		}
	}
	vc.Thumbprint, where = inherited(global, s, keyThumbprint)
	if vc.Thumbprint != "" {
		norm, err := normalizeThumbprint(vc.Thumbprint)
		if err != nil {
			return vc, p.errorf(where, keyThumbprint, "%q: %v", vc.Thumbprint, err)
		}
		vc.Thumbprint = norm
	}
	// With neither ca-file nor thumbprint the certificate is verified
	// against the system's trusted CAs: a vCenter whose certificate a
	// public or enterprise CA signed needs nothing pinned.
	if vc.Insecure && (vc.CAFile != "" || vc.Thumbprint != "") {
		klog.InfoS("insecure-flag is true: ca-file and thumbprint are ignored, vCenter's certificate is not verified",
			"config", p.name, "section", s.Name())
	}
	v, _ := inherited(global, s, keyDatacenters)
	vc.Datacenters = list(v)
	vc.FileShareClusters = list(value(s, keyFileShareClusters))
	vc.FileShareDatastoreURLs = list(value(s, keyFileShareDSURLs))
	vc.MigrationDatastoreURL = value(s, keyMigrationDSURL)
	return vc, nil
}

// snapshotLimits reads [Snapshot]: each limit 1 to MaxSnapshotsLimit.
func (p parser) snapshotLimits(s *ini.Section) (SnapshotLimits, error) {
	var l SnapshotLimits
	for _, k := range []struct {
		key string
		to  *int
	}{{keySnapGlobal, &l.Global}, {keySnapVSAN, &l.VSAN}, {keySnapVVOL, &l.VVOL}} {
		v := value(s, k.key)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxSnapshotsLimit {
			return l, p.errorf(s.Name(), k.key, "%q is not a number of snapshots from 1 to %d (vSphere's limit per disk)", v, MaxSnapshotsLimit)
		}
		*k.to = n
	}
	return l, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, errors.New("not a boolean")
}

func checkCAFile(path string) error {
	pem, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("can't be read: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s holds no PEM certificate", path)
	}
	return nil
}

// normalizeThumbprint accepts a SHA-1 (20 bytes) or SHA-256 (32 bytes)
// fingerprint as hex, in either case, its pairs separated by colons,
// spaces or nothing, and writes it as vSphere does: upper-case pairs
// joined by colons (AA:BB:…), the form TLS verification compares.
func normalizeThumbprint(t string) (string, error) {
	clean := strings.NewReplacer(":", "", " ", "", "-", "").Replace(strings.TrimSpace(t))
	b, err := hex.DecodeString(clean)
	if err != nil || (len(b) != 20 && len(b) != 32) {
		return "", errors.New("not a SHA-1 or SHA-256 fingerprint (hex pairs such as AA:BB:…)")
	}
	pairs := make([]string, len(b))
	for i, x := range b {
		pairs[i] = fmt.Sprintf("%02X", x)
	}
	return strings.Join(pairs, ":"), nil
}

// list splits a comma-separated value, trimming spaces and dropping empties.
func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

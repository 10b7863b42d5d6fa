package chart

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// referenceBuild is the lead's `make build` command, used when the Makefile is not there.
const referenceBuild = `CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/vsphere-csi ./cmd/vsphere-csi`

// binaryPackages: what the node plugin runs, and the Debian package that has it.
var binaryPackages = map[string]string{
	"mount": "mount", "umount": "mount",
	"blkid": "util-linux", "fsck": "util-linux", "mkfs": "util-linux", "blockdev": "util-linux", "findmnt": "util-linux", "lsblk": "util-linux",
	"mkfs.ext4": "e2fsprogs", "resize2fs": "e2fsprogs", "e2fsck": "e2fsprogs",
	"mkfs.xfs": "xfsprogs", "xfs_growfs": "xfsprogs", "xfs_repair": "xfsprogs",
	"udevadm":    "udev",
	"mount.nfs4": "nfs-common", "mount.nfs": "nfs-common",
}

// dockerInstr is one Dockerfile instruction, continuation lines joined.
type dockerInstr struct {
	cmd  string // upper case
	args string
}

func readDockerfile(t *testing.T) []dockerInstr {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []dockerInstr
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		if s := strings.TrimSpace(cur.String()); s != "" {
			cmd, args, _ := strings.Cut(s, " ")
			out = append(out, dockerInstr{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		}
		cur.Reset()
	}
	return out
}

// shellWords splits a command line, honouring quotes (enough for build commands).
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	var quote rune
	inWord := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// buildSpec is what matters of a go build command: its environment, flags, ldflags and
// package; the output path is left out.
type buildSpec struct {
	env     []string
	flags   []string
	ldflags string
	pkg     string
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// normalizeVars writes every variable reference as $NAME.
func normalizeVars(s string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		return "$" + sub[1] + sub[2] + sub[3]
	})
}

func parseBuild(cmdline string) (buildSpec, error) {
	words := shellWords(normalizeVars(cmdline))
	var b buildSpec
	i := 0
	for ; i < len(words) && strings.Contains(words[i], "=") && !strings.HasPrefix(words[i], "-"); i++ {
		b.env = append(b.env, words[i])
	}
	if i+1 >= len(words) || words[i] != "go" || words[i+1] != "build" {
		return b, fmt.Errorf("not a go build command: %q", cmdline)
	}
	for i += 2; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "-o" || w == "-ldflags" || w == "-tags" || w == "-gcflags":
			if i+1 >= len(words) {
				return b, fmt.Errorf("%s without a value in %q", w, cmdline)
			}
			if w == "-ldflags" {
				b.ldflags = strings.Join(strings.Fields(words[i+1]), " ")
			} else if w != "-o" {
				b.flags = append(b.flags, w+"="+words[i+1])
			}
			i++
		case strings.HasPrefix(w, "-ldflags="):
			b.ldflags = strings.Join(strings.Fields(strings.TrimPrefix(w, "-ldflags=")), " ")
		case strings.HasPrefix(w, "-o="):
		case strings.HasPrefix(w, "-"):
			b.flags = append(b.flags, w)
		default:
			b.pkg = w
		}
	}
	slices.Sort(b.env)
	slices.Sort(b.flags)
	return b, nil
}

// makefileBuild finds the go build command of ./cmd/vsphere-csi in the Makefile, with the
// Makefile's own variables (other than VERSION) expanded.
func makefileBuild(t *testing.T) (string, bool) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		return "", false
	}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	assign := regexp.MustCompile(`^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|::=|\?=|=)\s*(.*)$`)
	vars := map[string]string{}
	var recipes []string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "\t") {
			recipes = append(recipes, strings.TrimLeft(strings.TrimSpace(line), "@-"))
		} else if m := assign.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			vars[m[1]] = strings.TrimSpace(m[2])
		}
	}
	expand := func(s string) string {
		for range 5 {
			s = varRef.ReplaceAllStringFunc(s, func(m string) string {
				sub := varRef.FindStringSubmatch(m)
				name := sub[1] + sub[2] + sub[3]
				if v, ok := vars[name]; ok && name != "VERSION" {
					return v
				}
				return m
			})
		}
		return s
	}
	var build string
	for _, r := range recipes {
		if r = expand(r); strings.Contains(r, "go build") && strings.Contains(r, "./cmd/vsphere-csi") {
			build = r
			break
		}
	}
	if build == "" {
		return "", false
	}
	// A recipe line may set the environment with `env` or export it in the Makefile.
	build = strings.TrimPrefix(build, "env ")
	if v, ok := vars["CGO_ENABLED"]; ok && !strings.Contains(build, "CGO_ENABLED=") {
		build = "CGO_ENABLED=" + v + " " + build
	}
	return build, true
}

// simulatorTag is the build tag that compiles the embedded vCenter into vsphere-csi
// (--simulator): `make build` sets it for development, the image leaves it out.
const simulatorTag = "-tags=simulator"

// TestDockerfileBuildMatchesMakefile: the image's binary is built exactly as `make build`
// builds it (static, trimmed, version injected), but without the embedded vCenter.
func TestDockerfileBuildMatchesMakefile(t *testing.T) {
	var dockerBuild string
	for _, in := range readDockerfile(t) {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			words := strings.Fields(in.args)
			for len(words) > 0 && strings.HasPrefix(words[0], "--mount=") {
				words = words[1:]
			}
			dockerBuild = strings.Join(words, " ")
		}
	}
	if dockerBuild == "" {
		t.Fatal("the Dockerfile has no RUN ... go build")
	}
	ref, ok := makefileBuild(t)
	if !ok {
		t.Logf("no go build of ./cmd/vsphere-csi in a Makefile yet: comparing with %s", referenceBuild)
		ref = referenceBuild
	} else {
		t.Logf("the Makefile builds: %s", ref)
	}
	d, err := parseBuild(dockerBuild)
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseBuild(ref)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(d.flags, simulatorTag) {
		t.Errorf("the Dockerfile builds with %s: the image must not hold the embedded vCenter", simulatorTag)
	}
	m.flags = slices.DeleteFunc(m.flags, func(f string) bool { return f == simulatorTag })
	if fmt.Sprint(d) != fmt.Sprint(m) {
		t.Errorf("Dockerfile builds\n\t%s\nbut make builds\n\t%s\n(parsed: %+v vs %+v)", dockerBuild, ref, d, m)
	}
	if !slices.Contains(d.env, "CGO_ENABLED=0") || !slices.Contains(d.flags, "-trimpath") ||
		!strings.Contains(d.ldflags, "-X main.version=$VERSION") || d.pkg != "./cmd/vsphere-csi" {
		t.Errorf("the image's binary must be static (CGO_ENABLED=0), -trimpath, with -X main.version: %+v", d)
	}
}

func TestDockerfileStages(t *testing.T) {
	instrs := readDockerfile(t)
	args := map[string]string{}
	var froms []string
	var finalUser, entrypoint, copied string
	var installs []string
	for _, in := range instrs {
		switch in.cmd {
		case "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			if _, seen := args[k]; !seen {
				args[k] = v
			}
		case "FROM":
			froms = append(froms, in.args)
			finalUser = ""
		case "USER":
			finalUser = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "COPY":
			if strings.HasPrefix(in.args, "--from=") {
				f := strings.Fields(in.args)
				copied = f[len(f)-1]
			}
		case "RUN":
			if strings.Contains(in.args, "apt-get install") {
				_, after, _ := strings.Cut(in.args, "apt-get install")
				after, _, _ = strings.Cut(after, "&&")
				for _, w := range strings.Fields(after) {
					if !strings.HasPrefix(w, "-") {
						installs = append(installs, w)
					}
				}
			}
		}
	}
	if len(froms) < 2 {
		t.Fatalf("not multi-stage: FROM %v", froms)
	}
	goMod, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)`).FindSubmatch(goMod)
	if goVersion == nil || args["GO_VERSION"] != string(goVersion[1]) {
		t.Errorf("Dockerfile GO_VERSION %q differs from go.mod's go %q", args["GO_VERSION"], goVersion)
	}
	if !strings.HasPrefix(froms[0], "golang:${GO_VERSION}") {
		t.Errorf("the build stage is %q, not golang:${GO_VERSION}", froms[0])
	}
	if !strings.HasPrefix(froms[len(froms)-1], "debian:") || !strings.Contains(froms[len(froms)-1], "-slim") {
		t.Errorf("the runtime stage is %q, not Debian slim", froms[len(froms)-1])
	}
	if finalUser == "" || finalUser == "root" || strings.HasPrefix(finalUser, "0") {
		t.Errorf("the image runs as %q: it must default to a non-root user (the chart runs the node plugin as root)", finalUser)
	}
	if copied == "" || !strings.Contains(entrypoint, copied) {
		t.Errorf("ENTRYPOINT %s does not run the binary copied to %q", entrypoint, copied)
	}
	for bin, pkg := range binaryPackages {
		if !slices.Contains(installs, pkg) {
			t.Errorf("the runtime image lacks %s (Debian package %s); it installs %v", bin, pkg, installs)
		}
	}
	t.Logf("runtime packages: %v", installs)
}

// TestDebianPackagesExist asks apt which of the Dockerfile's packages exist.
func TestDebianPackagesExist(t *testing.T) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		t.Skip("no apt-cache on this machine")
	}
	if lists, _ := filepath.Glob("/var/lib/apt/lists/*Packages*"); len(lists) == 0 {
		t.Skip("apt package lists are absent (run apt-get update first)")
	}
	release := ""
	for _, in := range readDockerfile(t) {
		if in.cmd == "ARG" && strings.HasPrefix(in.args, "DEBIAN_RELEASE=") {
			release = strings.TrimPrefix(in.args, "DEBIAN_RELEASE=")
		}
	}
	if osr, err := os.ReadFile("/etc/os-release"); err == nil && release != "" && !strings.Contains(string(osr), "VERSION_CODENAME="+release) {
		t.Logf("this machine is not Debian %s: checking against its own package lists", release)
	}
	pkgs := map[string]bool{"ca-certificates": true}
	for _, p := range binaryPackages {
		pkgs[p] = true
	}
	names := make([]string, 0, len(pkgs))
	for p := range pkgs {
		names = append(names, p)
	}
	slices.Sort(names)
	out, err := exec.Command("apt-cache", append([]string{"show", "--no-all-versions"}, names...)...).CombinedOutput()
	for _, p := range names {
		if !strings.Contains(string(out), "Package: "+p+"\n") {
			t.Errorf("Debian package %s not found (apt-cache show: %v)\n%s", p, err, out)
		}
	}
}

// TestVersionVariable: -X main.version needs a package-level version variable in package main.
func TestVersionVariable(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "cmd/vsphere-csi")
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	for _, f := range files {
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if file.Name.Name != "main" {
			continue
		}
		for _, decl := range file.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.VAR {
				continue
			}
			for _, spec := range gen.Specs {
				for _, n := range spec.(*ast.ValueSpec).Names {
					if n.Name == "version" {
						return
					}
				}
			}
		}
	}
	t.Error("cmd/vsphere-csi has no package-level `var version` for -X main.version")
}

func TestParseBuild(t *testing.T) {
	a, err := parseBuild(`CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/x ./cmd/vsphere-csi`)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := parseBuild(referenceBuild)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("%+v != %+v", a, b)
	}
	c, _ := parseBuild(`go build -ldflags "-X main.version=$(VERSION)" -o bin/x ./cmd/vsphere-csi`)
	if fmt.Sprint(c) == fmt.Sprint(b) {
		t.Error("a build without CGO_ENABLED=0, -trimpath and -s -w compares equal")
	}
}

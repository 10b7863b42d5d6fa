// Package dockerfile reads what make e2e needs from the repository's
// Dockerfile to build the same image without a Docker engine: the Debian
// release and packages of the runtime stage, the go build command of the
// build stage, where the binary goes, the user, the entrypoint and the
// labels. It knows the shape of our Dockerfile, not the whole language:
// what it cannot read is an error, so the two cannot drift silently.
package dockerfile

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Spec is the image the Dockerfile describes.
type Spec struct {
	Base     string   // the runtime stage's FROM, args expanded: debian:bookworm-slim
	Release  string   // the Debian release of that base: bookworm
	Packages []string // apt-get install's packages, in the Dockerfile's order

	BuildEnv   []string // the go build's environment: CGO_ENABLED=0
	BuildFlags []string // its flags before -ldflags: -trimpath
	LDFlags    string   // its -ldflags, ${VERSION} left as is
	Package    string   // what it builds: ./cmd/vsphere-csi

	BinarySrc  string // the build stage's output COPY takes: /out/vsphere-csi
	BinaryPath string // where COPY puts it in the image: /usr/local/bin/vsphere-csi

	User       string
	Entrypoint []string
	Labels     map[string]string // ${VERSION} left as is
}

// Parse reads the Dockerfile at path.
func Parse(path string) (Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Spec{}, err
	}
	s, err := parse(string(data))
	if err != nil {
		return Spec{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

var argRef = regexp.MustCompile(`\$\{([A-Z_]+)\}`)

func parse(text string) (Spec, error) {
	s := Spec{Labels: map[string]string{}}
	args := map[string]string{} // global ARG defaults (before the first FROM)
	stages := 0
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if strings.HasPrefix(t, "#") {
			continue // a comment inside a continued instruction
		}
		if strings.HasSuffix(t, "\\") {
			cur.WriteString(strings.TrimSuffix(t, "\\") + " ")
			continue
		}
		cur.WriteString(t)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	expand := func(v string) string {
		return argRef.ReplaceAllStringFunc(v, func(m string) string {
			if a, ok := args[argRef.FindStringSubmatch(m)[1]]; ok {
				return a
			}
			return m
		})
	}
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "ARG":
			if k, v, ok := strings.Cut(rest, "="); ok && stages == 0 {
				args[k] = v
			}
		case "FROM":
			stages++
			s.Base = expand(strings.Fields(rest)[0])
		case "RUN":
			if i := strings.Index(rest, "apt-get install"); i >= 0 {
				s.Packages = nil
				for _, w := range strings.Fields(strings.Split(rest[i+len("apt-get install"):], "&&")[0]) {
					if !strings.HasPrefix(w, "-") {
						s.Packages = append(s.Packages, w)
					}
				}
			}
			if i := strings.Index(rest, "go build"); i >= 0 {
				if err := s.readBuild(rest, i); err != nil {
					return Spec{}, err
				}
			}
		case "COPY":
			f := strings.Fields(rest)
			if len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				s.BinarySrc, s.BinaryPath = f[1], f[2]
			}
		case "USER":
			s.User = rest
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &s.Entrypoint); err != nil {
				return Spec{}, fmt.Errorf("ENTRYPOINT %s: want the JSON form: %v", rest, err)
			}
		case "LABEL":
			for _, m := range regexp.MustCompile(`([a-z0-9.]+)="([^"]*)"`).FindAllStringSubmatch(rest, -1) {
				s.Labels[m[1]] = m[2]
			}
		}
	}
	if name, tag, ok := strings.Cut(s.Base, ":"); ok && name == "debian" {
		s.Release = strings.TrimSuffix(tag, "-slim")
	}
	switch {
	case s.Release == "":
		return Spec{}, fmt.Errorf("the runtime stage's base %q is not a debian:<release>[-slim] image", s.Base)
	case len(s.Packages) == 0:
		return Spec{}, fmt.Errorf("no apt-get install in the runtime stage")
	case s.LDFlags == "" || s.Package == "":
		return Spec{}, fmt.Errorf("no go build with -ldflags in the build stage")
	case s.BinaryPath == "":
		return Spec{}, fmt.Errorf("no COPY --from=<build stage> of the binary")
	case len(s.Entrypoint) == 0:
		return Spec{}, fmt.Errorf("no ENTRYPOINT")
	}
	return s, nil
}

// readBuild reads `ENV=... go build FLAGS -ldflags "..." -o OUT PKG` of a
// RUN whose "go build" starts at i.
func (s *Spec) readBuild(run string, i int) error {
	before := strings.Fields(run[:i])
	for j := len(before) - 1; j >= 0 && strings.Contains(before[j], "="); j-- {
		if strings.HasPrefix(before[j], "--") {
			break // RUN's own --mount=... options
		}
		s.BuildEnv = append([]string{before[j]}, s.BuildEnv...)
	}
	cmd := run[i+len("go build"):]
	m := regexp.MustCompile(`^(.*?)-ldflags\s+"([^"]*)"\s+-o\s+(\S+)\s+(\S+)`).FindStringSubmatch(strings.TrimSpace(cmd))
	if m == nil {
		return fmt.Errorf(`go build %s: want FLAGS -ldflags "..." -o OUT PKG`, cmd)
	}
	s.BuildFlags = strings.Fields(m[1])
	s.LDFlags, s.Package = m[2], m[4]
	return nil
}

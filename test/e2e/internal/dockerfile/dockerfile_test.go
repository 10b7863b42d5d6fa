package dockerfile

import (
	"slices"
	"strings"
	"testing"
)

// TestParseRepositoryDockerfile reads the repository's Dockerfile: every
// field the image build needs is there.
func TestParseRepositoryDockerfile(t *testing.T) {
	s, err := Parse("../../../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if s.Release == "" || s.User == "" || s.BinaryPath == "" || !strings.HasPrefix(s.BinaryPath, "/") {
		t.Errorf("incomplete: %+v", s)
	}
	for _, p := range []string{"e2fsprogs", "xfsprogs", "nfs-common", "util-linux"} {
		if !slices.Contains(s.Packages, p) {
			t.Errorf("packages %v: no %s (the node plugin formats, mounts and mounts NFS with it)", s.Packages, p)
		}
	}
	if s.Entrypoint[0] != s.BinaryPath {
		t.Errorf("entrypoint %v does not run the binary at %s", s.Entrypoint, s.BinaryPath)
	}
}

func TestParseRefusesWhatItCannotRead(t *testing.T) {
	for name, text := range map[string]string{
		"alpine base": "FROM golang AS build\nRUN go build -ldflags \"-s\" -o /out/x ./cmd/x\nFROM alpine:3\nRUN apk add x\nCOPY --from=build /out/x /x\nENTRYPOINT [\"/x\"]\n",
		"no packages": "FROM golang AS build\nRUN go build -ldflags \"-s\" -o /out/x ./cmd/x\nFROM debian:bookworm-slim\nCOPY --from=build /out/x /x\nENTRYPOINT [\"/x\"]\n",
		"shell form":  "FROM golang AS build\nRUN go build -ldflags \"-s\" -o /out/x ./cmd/x\nFROM debian:bookworm-slim\nRUN apt-get install -y a\nCOPY --from=build /out/x /x\nENTRYPOINT /x\n",
		"no -ldflags": "FROM golang AS build\nRUN go build -o /out/x ./cmd/x\nFROM debian:bookworm-slim\nRUN apt-get install -y a\nCOPY --from=build /out/x /x\nENTRYPOINT [\"/x\"]\n",
	} {
		if s, err := parse(text); err == nil {
			t.Errorf("%s: parsed as %+v, want an error", name, s)
		}
	}
	s, err := parse("ARG R=trixie\nFROM golang AS build\nRUN --mount=type=cache,target=/x \\\n    CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w -X main.version=${VERSION}\" -o /out/x ./cmd/x\n" +
		"FROM debian:${R}-slim\n# tools\nRUN apt-get update \\\n    && apt-get install -y --no-install-recommends \\\n        a \\\n        b \\\n    && rm -rf /var/lib/apt/lists/*\n" +
		"COPY --from=build /out/x /usr/bin/x\nLABEL a.b=\"c\" \\\n      d.e=\"${VERSION}\"\nUSER 1:1\nENTRYPOINT [\"/usr/bin/x\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	if s.Release != "trixie" || !slices.Equal(s.Packages, []string{"a", "b"}) || !slices.Equal(s.BuildEnv, []string{"CGO_ENABLED=0"}) ||
		!slices.Equal(s.BuildFlags, []string{"-trimpath"}) || s.LDFlags != "-s -w -X main.version=${VERSION}" || s.Package != "./cmd/x" ||
		s.BinarySrc != "/out/x" || s.BinaryPath != "/usr/bin/x" || s.User != "1:1" || s.Labels["d.e"] != "${VERSION}" || s.Labels["a.b"] != "c" {
		t.Errorf("parsed %+v", s)
	}
}

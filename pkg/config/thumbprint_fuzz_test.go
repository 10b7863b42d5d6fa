package config

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// FuzzThumbprint: normalizeThumbprint accepts exactly the SHA-1 and
// SHA-256 fingerprints written as hex (either case; pairs separated by
// colons, spaces, dashes or nothing), and writes each as TLS verification
// compares it (upper-case pairs joined by colons, as govmomi's
// soap.ThumbprintSHA1/SHA256 print a certificate's): no digit lost, added
// or changed, the same answer for every way of writing the same bytes, and
// its own output unchanged.
func FuzzThumbprint(f *testing.F) {
	f.Add("AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01", []byte("0123456789abcdefghij"), uint8(0))
	f.Add(" abcdef0123456789abcdef0123456789abcdef01 ", []byte("0123456789abcdefghijklmnopqrstuv"), uint8(1))
	f.Add("ab cd ef 01 23 45 67 89 ab cd ef 01 23 45 67 89 ab cd ef 0", []byte{}, uint8(2))
	f.Add("AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:0", []byte{1}, uint8(3))
	f.Add("GG:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01", []byte{}, uint8(0))
	f.Add("AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01\x00", []byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, in string, raw []byte, style uint8) {
		checkThumbprint(t, in)

		// The same bytes written in several ways give one answer.
		if len(raw) != 20 && len(raw) != 32 {
			return
		}
		pairs := make([]string, len(raw))
		for i, b := range raw {
			pairs[i] = fmt.Sprintf("%02X", b)
		}
		want := strings.Join(pairs, ":")
		written := []string{
			want,
			strings.ToLower(want),
			hex.EncodeToString(raw),
			strings.Join(pairs, " "),
			strings.Join(pairs, "-"),
			"  " + strings.ToLower(strings.Join(pairs, ":")) + "\n",
		}[style%6]
		got, err := normalizeThumbprint(written)
		if err != nil || got != want {
			t.Fatalf("%q (the bytes %x) normalized to %q, %v; want %q", written, raw, got, err, want)
		}
	})
}

// checkThumbprint checks normalizeThumbprint's answer for in.
func checkThumbprint(t *testing.T, in string) {
	t.Helper()
	// What the input says: its hex digits, if it is only hex digits and
	// separators (within surrounding white space).
	var digits strings.Builder
	wellFormed := true
	for _, r := range strings.TrimSpace(in) {
		switch {
		case strings.ContainsRune("0123456789abcdefABCDEF", r):
			digits.WriteRune(r)
		case r == ':' || r == ' ' || r == '-':
		default:
			wellFormed = false
		}
	}
	d := strings.ToUpper(digits.String())
	good := wellFormed && (len(d) == 40 || len(d) == 64)

	out, err := normalizeThumbprint(in)
	switch {
	case err != nil && good:
		t.Fatalf("%q (a %d-digit fingerprint) refused: %v", in, len(d), err)
	case err != nil:
		return
	case !good:
		t.Fatalf("%q (not a SHA-1 or SHA-256 fingerprint) accepted as %q", in, out)
	case strings.ReplaceAll(out, ":", "") != d:
		t.Fatalf("%q normalized to %q: the digits changed", in, out)
	}
	for i, p := range strings.Split(out, ":") {
		if len(p) != 2 || strings.Trim(p, "0123456789ABCDEF") != "" {
			t.Fatalf("%q normalized to %q: pair %d is %q", in, out, i, p)
		}
	}
	if again, err := normalizeThumbprint(out); err != nil || again != out {
		t.Fatalf("%q normalized to %q, which normalizes to %q, %v", in, out, again, err)
	}
}

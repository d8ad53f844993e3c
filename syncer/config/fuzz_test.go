package config

import (
	"io"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes through the parser and, when they parse,
// through every node view and its lint. It must never panic or hang. The
// seed corpus (testdata/fuzz/FuzzParse) holds csync2's example configs and
// ours, so it runs from a fresh clone.
func FuzzParse(f *testing.F) {
	f.Add([]byte(patternsCfg))
	f.Add([]byte("prefix p { on *: /x[1]; }\ngroup { host a (b@c); key k; include %p%/** *.c; compare /q; action { pattern %p%/y; exec \"e %%\"; do-local-only; } }\nssh { port 1; } ha { cluster-ip ::1; }"))
	f.Add([]byte("safety { max-delete 10%; devices refuse; }\nsafety g { max-delete-count 0; }\ngroup g { host a; key k; }"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := Parse(filepath.Join(dir, "fuzz.cfg"), src)
		if err != nil {
			_ = err.Error()
			return
		}
		tried := 0 // a few nodes suffice; each Node call walks all groups
		for _, g := range c.Groups {
			for _, h := range g.Hosts {
				if tried++; tried > 4 {
					return
				}
				v, err := c.Node(h.Name)
				if err != nil {
					continue
				}
				for _, p := range []string{"/", "/etc/x", "/x/y/z.c", "/data[1]/f"} {
					v.Match(p, true)
					v.Peers(p)
					for _, gv := range v.GroupsFor(p) {
						gv.ActionsFor(p)
						if w, _ := gv.WireName(p); w != "" {
							_, _ = gv.LocalPath(w)
						}
					}
				}
				v.Roots()
				_ = v.Summary().WriteText(io.Discard)
				for _, i := range v.Lint() {
					_ = i.String()
				}
			}
		}
	})
}

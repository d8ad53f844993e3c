package engine

import (
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"ocf-csync/syncer/apply"
	"ocf-csync/syncer/config"
)

// FuzzResolve feeds arbitrary (group, wire name) pairs to the receiver's
// path confinement, as a key-holding sender could. Whatever it accepts
// must be a clean absolute path that the proved group syncs, reached
// through no symlinked directory; a group the sender did not prove is
// never accepted. Seeds: testdata/fuzz/FuzzResolve and the f.Add below.
func FuzzResolve(f *testing.F) {
	root := f.TempDir()
	for _, d := range []string{"data/sub", "outside", "extra/u1/pub", "data/excluded"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "data/file"), []byte("x"), 0o644)
	os.Symlink("/", filepath.Join(root, "data/link"))
	os.Symlink("../outside", filepath.Join(root, "data/rel"))
	os.Symlink(filepath.Join(root, "outside"), filepath.Join(root, "extra/u2"))
	cfgText := strings.ReplaceAll(`prefix data { on a: ROOT/data; on b: /elsewhere; }
group g {
  host a b;
  key ROOT/k;
  include %data%;
  exclude %data%/excluded;
  include ROOT/extra/*/pub;
}
group h {
  host a b;
  key ROOT/k;
  include ROOT/outside;
}
`, "ROOT", root)
	cfg, err := config.Parse(filepath.Join(root, "c.cfg"), []byte(cfgText))
	if err != nil {
		f.Fatal(err)
	}
	view, err := cfg.Node("a")
	if err != nil {
		f.Fatal(err)
	}
	g := view.Group("g")
	for _, s := range []string{
		"%data%/file", "%data%/sub/new", "%data%/link/etc/passwd", "%data%/rel/x", "%data%/../outside/x",
		"%data%", "%data%/excluded/x", root + "/data/sub", root + "/extra/u1/pub/f", root + "/extra/u2/pub/f",
		root + "/outside/x", "/etc/passwd", "%nope%/x", "relative", "%data%//x", "%data%/./x", "%data%/x\x00y",
	} {
		f.Add("g", []byte(s))
	}
	f.Add("h", []byte(root+"/outside/x"))

	f.Fuzz(func(t *testing.T, group string, wire []byte) {
		r := &receiver{o: ServeOptions{View: view, Config: cfg}, log: slog.New(slog.DiscardHandler),
			groups: map[string]*config.GroupView{"g": g}, targets: map[string]*apply.Target{}, sender: "b"}
		rg, local, _, err := r.resolve(group, wire)
		if err != nil {
			return
		}
		if rg != g || group != "g" {
			t.Fatalf("accepted group %q (%v), the sender proved only g", group, rg.Name)
		}
		if !strings.HasPrefix(local, "/") || path.Clean(local) != local || strings.IndexByte(local, 0) >= 0 {
			t.Fatalf("accepted %q as %q: not a clean absolute path", wire, local)
		}
		if s1, _ := g.Match(local, false); !s1 {
			if s2, _ := g.Match(local, true); !s2 {
				t.Fatalf("accepted %q as %q, which group g does not sync", wire, local)
			}
		}
		for p := path.Dir(local); p != "/"; p = path.Dir(p) {
			if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				t.Fatalf("accepted %q as %q, through the symlinked directory %s", wire, local, p)
			}
		}
	})
}

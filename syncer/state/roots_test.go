package state

import (
	"testing"
	"time"
)

func TestFSIdentitySame(t *testing.T) {
	ext4 := FSIdentity{FSType: "ext4", UUID: "aa", FSID: "11", Source: "/dev/sda1", MountPoint: "/srv", MountRoot: "/"}
	with := func(f func(*FSIdentity)) FSIdentity { c := ext4; f(&c); return c }
	for _, tt := range []struct {
		name string
		b    FSIdentity
		same bool
	}{
		{"identical", ext4, true},
		{"device renamed after a reboot", with(func(i *FSIdentity) { i.Source, i.Dev = "/dev/sdb1", 99 }), true},
		{"fsid changed but the UUID is the same (xfs after dm renumbering)", with(func(i *FSIdentity) { i.FSID = "22" }), true},
		{"another disk", with(func(i *FSIdentity) { i.UUID, i.FSID = "bb", "22" }), false},
		{"no UUID any more: f_fsid decides", with(func(i *FSIdentity) { i.UUID = "" }), true},
		{"no UUID, other fsid", with(func(i *FSIdentity) { i.UUID, i.FSID = "", "22" }), false},
		{"not mounted: the root file system", FSIdentity{FSType: "ext4", FSID: "33", Source: "/dev/vda", MountPoint: "/", MountRoot: "/"}, false},
		{"bind mount of another directory", with(func(i *FSIdentity) { i.MountRoot = "/other" }), false},
		{"other type", with(func(i *FSIdentity) { i.FSType = "tmpfs" }), false},
	} {
		if got := ext4.Same(tt.b); got != tt.same {
			t.Errorf("%s: Same = %v", tt.name, got)
		}
	}
	nfs := FSIdentity{FSType: "nfs4", Source: "srv:/export", MountPoint: "/data", MountRoot: "/"}
	if !nfs.Same(nfs) || nfs.Same(FSIdentity{FSType: "nfs4", Source: "other:/export", MountPoint: "/data", MountRoot: "/"}) {
		t.Error("without UUID and fsid the mount source decides")
	}
}

func TestRootRecordsAndCount(t *testing.T) {
	s := openT(t, t.TempDir())
	b := s.NewBatch()
	for _, p := range []string{"/srv", "/srv/www", "/srv/www/a", "/srv/www/d", "/srv/www/d/e", "/srv/wwwx", "/srv/wwwx/f"} {
		b.PutFile(p, reg(1, 1))
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		dir   string
		limit int
		want  int
	}{{"/srv/www", 0, 3}, {"/srv/www", 2, 2}, {"/srv", 0, 6}, {"/", 0, 7}, {"/srv/www/a", 0, 0}, {"/nope", 0, 0}} {
		if n, err := s.CountBelow(tt.dir, tt.limit); err != nil || n != tt.want {
			t.Errorf("CountBelow(%s, %d) = %d, %v; want %d", tt.dir, tt.limit, n, err, tt.want)
		}
	}
	r := RootRecord{Path: "/srv/www", ID: FSIdentity{FSType: "ext4", UUID: "aa", MountPoint: "/", MountRoot: "/"}, Entries: 3, UpdatedNs: 5}
	if err := s.PutRoot(r); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRoot(RootRecord{Path: "/srv/www/d", Mount: true}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.GetRoot("/srv/www")
	if err != nil || !ok || got != r {
		t.Errorf("GetRoot = %+v, %v, %v", got, ok, err)
	}
	var paths []string
	_ = s.RootRecords(func(r RootRecord) error { paths = append(paths, r.Path); return nil })
	if len(paths) != 2 || paths[0] != "/srv/www" || paths[1] != "/srv/www/d" {
		t.Errorf("RootRecords = %q", paths)
	}
	if err := s.DeleteRoot("/srv/www/d"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.GetRoot("/srv/www/d"); ok {
		t.Error("DeleteRoot left the record")
	}
}

func TestRefusalsKeepSince(t *testing.T) {
	s := openT(t, t.TempDir())
	t0 := time.Unix(1000, 0)
	a := Refusal{Kind: RefusedRootEmpty, Path: "/srv/www", Groups: []string{"www"}, Reason: "empty", Override: "x"}
	b := Refusal{Kind: RefusedMassDelete, Groups: []string{"etc"}, Reason: "too many"}
	fresh, err := s.SetRefusals([]Refusal{a}, t0)
	if err != nil || len(fresh) != 1 {
		t.Fatalf("first: fresh %v, %v", fresh, err)
	}
	fresh, err = s.SetRefusals([]Refusal{a, b}, t0.Add(time.Minute))
	if err != nil || len(fresh) != 1 || fresh[0].Kind != RefusedMassDelete {
		t.Fatalf("second: fresh %v, %v", fresh, err)
	}
	rs, err := s.Refusals()
	if err != nil || len(rs) != 2 || !rs[0].Since.Equal(t0) || !rs[1].Since.Equal(t0.Add(time.Minute)) {
		t.Errorf("refusals %+v, %v", rs, err)
	}
	if _, err := s.SetRefusals(nil, t0); err != nil {
		t.Fatal(err)
	}
	if rs, _ := s.Refusals(); len(rs) != 0 {
		t.Errorf("cleared: %+v", rs)
	}
	want := "refused /srv/www (group www): empty; if this is intended, run 'x'"
	if got := a.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestRecentDeletes(t *testing.T) {
	s := openT(t, t.TempDir())
	now := time.Unix(10000, 0)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddDeletes("n2", "www", 10, now.Add(-10*time.Minute), time.Hour))
	must(s.AddDeletes("n2", "www", 5, now.Add(-time.Minute), time.Hour))
	must(s.AddDeletes("n3", "www", 7, now, time.Hour))
	if n, err := s.RecentDeletes("n2", "www", now.Add(-5*time.Minute)); err != nil || n != 5 {
		t.Errorf("n2 recent = %d, %v; want 5", n, err)
	}
	if n, _ := s.RecentDeletes("n2", "www", now.Add(-time.Hour)); n != 15 {
		t.Errorf("n2 within the hour = %d, want 15", n)
	}
	// Pruned by age on the next add; forgotten with a negative n.
	must(s.AddDeletes("n2", "www", 0, now, 5*time.Minute))
	if n, _ := s.RecentDeletes("n2", "www", now.Add(-time.Hour)); n != 5 {
		t.Errorf("after pruning = %d, want 5", n)
	}
	must(s.AddDeletes("n2", "www", -1, now, 5*time.Minute))
	if n, _ := s.RecentDeletes("n2", "www", now.Add(-time.Hour)); n != 0 {
		t.Errorf("after forgetting = %d, want 0", n)
	}
	if n, _ := s.RecentDeletes("n3", "www", now.Add(-time.Hour)); n != 7 {
		t.Errorf("other peer = %d, want 7", n)
	}
}

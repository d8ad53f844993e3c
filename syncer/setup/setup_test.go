package setup

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"ocf-csync/syncer/config"
)

func TestWriteGroupKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	if err := WriteGroupKey(p); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	if !regexp.MustCompile(`^[A-Za-z0-9._]{64}\n$`).Match(data) {
		t.Errorf("key = %q", data)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if err := WriteGroupKey(p); err == nil || !strings.Contains(err.Error(), "never overwrites") {
		t.Errorf("second write: %v", err)
	}
	if again, _ := os.ReadFile(p); string(again) != string(data) {
		t.Errorf("the key changed")
	}
}

func testKey(t *testing.T) (ssh.PublicKey, string) {
	_, pub, err := newIdentity("test@x")
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	return k, pub
}

func TestMergeAuthorized(t *testing.T) {
	k, pub := testKey(t)
	other, otherPub := testKey(t)
	_ = other
	line := `command="x",restrict ` + pub
	for _, tc := range []struct {
		name, in, want string
		changed        bool
	}{
		{"empty", "", line + "\n", true},
		{"appended", otherPub + "\n", otherPub + "\n" + line + "\n", true},
		{"no final newline", "# c\n" + otherPub, "# c\n" + otherPub + "\n" + line + "\n", true},
		{"present", otherPub + "\n" + line + "\n", otherPub + "\n" + line + "\n", false},
		{"replaced", pub + "\n" + otherPub + "\n", line + "\n" + otherPub + "\n", true},
		{"duplicates dropped", line + "\n" + pub + "\n", line + "\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changed := mergeAuthorized([]byte(tc.in), line, k)
			if string(out) != tc.want || changed != tc.changed {
				t.Errorf("got %q changed=%v, want %q changed=%v", out, changed, tc.want, tc.changed)
			}
		})
	}
}

func TestAuthorizedKeysLine(t *testing.T) {
	cfg, err := config.Parse("/etc/x.cfg", []byte("group g { host a (s); key k; }\nssh { sftp-hosts s; }\nha { cluster-ip 10.0.0.9; }\n"))
	if err != nil {
		t.Fatal(err)
	}
	from := []string{"10.0.0.1", "10.0.0.2", "10.0.0.9"}
	if got, want := AuthorizedKeysLine(cfg, "/etc/ocf-csync.cfg", false, from, "ssh-ed25519 AAAA c"),
		`command="/usr/sbin/ocf-csync serve",restrict,from="10.0.0.1,10.0.0.2,10.0.0.9" ssh-ed25519 AAAA c`; got != want {
		t.Errorf("default config:\n got %s\nwant %s", got, want)
	}
	if got, want := AuthorizedKeysLine(cfg, "/etc/my cfg", false, from[:1], "K"),
		`command="/usr/sbin/ocf-csync serve --config '/etc/my cfg'",restrict,from="10.0.0.1" K`; got != want {
		t.Errorf("other config:\n got %s\nwant %s", got, want)
	}
	if got, want := AuthorizedKeysLine(cfg, "/etc/x.cfg", true, from[:1], "K"),
		`command="internal-sftp",restrict,from="10.0.0.1" K`; got != want {
		t.Errorf("SFTP target:\n got %s\nwant %s", got, want)
	}
}

func TestExpandPath(t *testing.T) {
	if got := expandPath("/srv/%n/%u/keys%%x%z", "node2", "root"); got != "/srv/node2/root/keys%x%z" {
		t.Errorf("got %q", got)
	}
}

func TestPushPeers(t *testing.T) {
	cfg, err := config.Parse("t.cfg", []byte("group g { host a b (c) (s); key k; }\nssh { sftp-hosts s; }\n"))
	if err != nil {
		t.Fatal(err)
	}
	hs, err := pushPeers(cfg, "a", nil)
	if err != nil || hostNames(hs) != "b c" {
		t.Errorf("default peers = %q, %v; want b c (not itself, not the SFTP target)", hostNames(hs), err)
	}
	for _, bad := range [][]string{{"s"}, {"a"}, {"zz"}} {
		if _, err := pushPeers(cfg, "a", bad); err == nil {
			t.Errorf("pushPeers(%v) accepted", bad)
		}
	}
	if pusher(cfg, "c") || !pusher(cfg, "b") {
		t.Errorf("pusher: c %v, b %v", pusher(cfg, "c"), pusher(cfg, "b"))
	}
}

package main

import (
	"errors"
	"strings"
	"testing"
)

// TestCsync2Translate: csync2 command lines, crmsh's first (bootstrap.py:
// csync2_update, init_csync2, join_csync2), become these ocf-csync ones.
// No csync2 line ever carries --allow-mass-delete.
func TestCsync2Translate(t *testing.T) {
	const cfg = "--config /etc/csync2.cfg"
	for _, tc := range []struct {
		line string // csync2's arguments
		want string // ocf-csync's, runs joined by " && "
	}{
		// crmsh
		{"-k /etc/csync2/key_hagroup", "keygen /etc/csync2/key_hagroup"},
		{"-cr /", cfg + " -q check -r -- /"},
		{"-rm /etc/corosync/corosync.conf", cfg + " -q mark -r -- /etc/corosync/corosync.conf"},
		{"-rxv /etc/corosync/corosync.conf", cfg + " -v sync -r -- /etc/corosync/corosync.conf"},
		{"-rf /etc/corosync/corosync.conf", cfg + " -q force -r -- /etc/corosync/corosync.conf"},
		{"-rm /", cfg + " -q mark -r -- /"},
		{"-rxv", cfg + " -v sync -r"},
		{"-rf /", cfg + " -q force -r -- /"},
		// the rest of the brief's list
		{"-xv", cfg + " -v sync"},
		{"-x", cfg + " -q sync"},
		{"-cIr /", cfg + " -q check -r --init -- /"},
		{"-c", cfg + " -q check"},
		{"-cu", cfg + " -q check && " + cfg + " -q update"},
		{"-u -d", cfg + " -q update --dry-run"},
		{"-m f1 f2", cfg + " -q mark -- f1 f2"},
		{"-f /x", cfg + " -q force -- /x"},
		{"-L", cfg + " -q list files"},
		{"-M", cfg + " -q list dirty"},
		{"-T", cfg + " -q compare --"},
		{"-T /etc/x", cfg + " -q compare -- /etc/x"},
		{"-T node1 node2", cfg + " -q --node node1 compare -- node2"},
		{"-T node1 node2 /etc/x", cfg + " -q --node node1 compare -- node2 /etc/x"},
		{"-TT node1 node2 /etc/x", cfg + " -q --node node1 diff --peer node2 -- /etc/x"},
		{"-TT /etc/x", cfg + " -q diff -- /etc/x"},
		{"-TI node1 node2", cfg + " -q --node node1 compare --mark -- node2"},
		{"-TIX node1 node2", cfg + " -q --node node1 compare --mark --delete -- node2"},
		{"-N node1 -xv -P node2,node3 -G g", cfg + " --node node1 -v sync --peer node2,node3 --group g"},
		{"-C web -x", "--config /etc/csync2_web.cfg -q sync"},
		{"-Cweb -x", "--config /etc/csync2_web.cfg -q sync"},
		{"-xvvv", cfg + " -v -v sync"},
		{"/etc/x -rx", cfg + " -q sync -r -- /etc/x"}, // GNU getopt permutes
		{"-x -- -odd", cfg + " -q sync -- -odd"},
		{"-i", cfg + " -q serve"},
		{"-xF -B -A", cfg + " -q sync"},
		{"-cF /x", cfg + " -q check --force -- /x"},
	} {
		o, err := parseCsync2(strings.Fields(tc.line))
		if err != nil {
			t.Errorf("csync2 %s: %v", tc.line, err)
			continue
		}
		cfgFile, err := o.configFile(Env{Environ: []string{"CSYNC2_SYSTEM_DIR=/etc"}})
		if err != nil {
			t.Errorf("csync2 %s: %v", tc.line, err)
			continue
		}
		runs, notice, err := o.translate(cfgFile)
		if err != nil || notice != "" {
			t.Errorf("csync2 %s: %q, %v", tc.line, notice, err)
			continue
		}
		var got []string
		for _, r := range runs {
			got = append(got, strings.Join(r.args, " "))
		}
		if g := strings.Join(got, " && "); g != tc.want {
			t.Errorf("csync2 %s\n got ocf-csync %s\nwant ocf-csync %s", tc.line, g, tc.want)
		}
		if strings.Contains(strings.Join(got, " "), "allow-mass-delete") {
			t.Errorf("csync2 %s implies --allow-mass-delete: %s", tc.line, got)
		}
	}
}

// TestCsync2Refused: what csync2 answers with its help text (exit 1), and
// the modes that have nothing to run.
func TestCsync2Refused(t *testing.T) {
	for _, tc := range []struct {
		line string
		code int    // 0: a usage error
		msg  string // part of the message
	}{
		{"", 0, "no mode"},
		{"-xc", 0, "only one mode letter"},
		{"-cx", 0, "only one mode letter"},
		{"-q", 0, "unknown option -q"},
		{"-N", 0, "-N needs an argument"},
		{"-L extra", 0, "takes no file"},
		{"-T a b c d", 0, "at most"},
		{"-m", 0, "-m needs files"},
		{"-f", 0, "-f needs files"},
		{"-R -G g", 1, "Never run -R with -G!"},
		{"-H", 2, ""},
		{"-ii", 1, "no TCP server"},
		{"-TT", 1, "needs a file"},
		{"-o /x", 1, "not supported"},
		{"-k", 0, "unknown option -k"}, // csync2 takes -k only as "-k FILE"
	} {
		o, err := parseCsync2(strings.Fields(tc.line))
		if err == nil {
			_, _, err = o.translate("/etc/csync2.cfg")
		}
		var u *csync2Usage
		var ex *csync2Exit
		switch {
		case tc.code == 0 && !errors.As(err, &u):
			t.Errorf("csync2 %s: %v; want a usage error", tc.line, err)
		case tc.code != 0 && (!errors.As(err, &ex) || ex.code != tc.code):
			t.Errorf("csync2 %s: %v; want exit %d", tc.line, err, tc.code)
		case err != nil && !strings.Contains(err.Error(), tc.msg):
			t.Errorf("csync2 %s: %q does not say %q", tc.line, err, tc.msg)
		}
	}
	o := &csync2Opts{cfgName: "Web"}
	if _, err := o.configFile(Env{}); err == nil || err.Error() != "Config names are limited to [a-z0-9]+." {
		t.Errorf("-C Web: %v", err)
	}
}

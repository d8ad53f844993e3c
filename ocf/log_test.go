package ocf

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLogHandlerDestinations(t *testing.T) {
	now := time.Date(2025, 11, 21, 22, 37, 50, 0, time.UTC)
	tests := []struct {
		name                   string
		tty, facility, logfile bool
		debug                  bool
		wantStderr, wantSyslog bool
		wantFile               bool
	}{
		{name: "tty only", tty: true, facility: true, logfile: true, wantStderr: true},
		{name: "nothing else", wantStderr: true},
		{name: "syslog and file", facility: true, logfile: true, wantSyslog: true, wantFile: true},
		{name: "file only", logfile: true, wantFile: true},
		{name: "syslog only", facility: true, wantSyslog: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr, sys bytes.Buffer
			o := LogOptions{Tag: "mirror(vip)", Stderr: &stderr, StderrTTY: tt.tty, Pid: 42, Now: func() time.Time { return now }}
			if tt.facility {
				o.Facility, o.Syslog = "local3", &sys
			}
			if tt.logfile {
				o.LogFile = filepath.Join(t.TempDir(), "pacemaker.log")
			}
			l := slog.New(NewLogHandler(o)).With("peer", "node2")
			l.Info("final sync done", "took", "1.2s", "err", "")
			l.Debug("hidden without HA_debug")
			l.Error("push failed", "msg", "connection refused")
			const info = `INFO: final sync done peer=node2 took=1.2s err=""`
			const errl = `ERROR: push failed peer=node2 msg="connection refused"`
			if got := stderr.String(); (got != "") != tt.wantStderr || (tt.wantStderr && got != info+"\n"+errl+"\n") {
				t.Errorf("stderr = %q", got)
			}
			if got := sys.String(); (got != "") != tt.wantSyslog || (tt.wantSyslog && !strings.HasPrefix(got, "mirror(vip)[42]: "+info+"\n")) {
				t.Errorf("syslog = %q", got)
			}
			if tt.logfile {
				data, _ := os.ReadFile(o.LogFile)
				want := "Nov 21 22:37:50  mirror(vip)[42]:    " + info + "\n"
				if got := string(data); (got != "") != tt.wantFile || (tt.wantFile && !strings.HasPrefix(got, want)) {
					t.Errorf("log file = %q, want prefix %q", got, want)
				}
			}
			if strings.Contains(stderr.String()+sys.String(), "hidden") {
				t.Error("DEBUG logged without HA_debug")
			}
		})
	}
}

func TestLogOptionsFromEnv(t *testing.T) {
	e := NewEnv([]string{"OCF_RESOURCE_INSTANCE=p_mirror", "HA_LOGFACILITY=daemon", "HA_LOGFILE=/var/log/x.log", "HA_debug=1"})
	o := LogOptionsFromEnv(e, "mirror", &bytes.Buffer{})
	if o.Tag != "mirror(p_mirror)" || o.Facility != "daemon" || o.LogFile != "/var/log/x.log" || !o.Debug || o.StderrTTY {
		t.Errorf("options %+v", o)
	}
	if got := facility("local3"); got != 19<<3 {
		t.Errorf("facility(local3) = %d", got)
	}
}

// TestDaemonLogOptions: the daemon logs to syslog (daemon facility, which
// journald keeps) unless Pacemaker started it or HA_LOGFACILITY/HA_LOGFILE
// say otherwise; under Pacemaker it logs as its agents do.
func TestDaemonLogOptions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      []string
		facility string
		logfile  string
	}{
		{"by hand or from a systemd unit", nil, "daemon", ""},
		{"heartbeat haresources", []string{"OCF_RESOURCE_INSTANCE=mirror"}, "daemon", ""},
		{"under Pacemaker", []string{"OCF_RESKEY_CRM_meta_timeout=20000", "OCF_ROOT=/usr/lib/ocf"}, "", ""},
		{"under Pacemaker with its facility", []string{"PCMK_logfacility=daemon", "HA_LOGFACILITY=local5"}, "local5", ""},
		{"HA_LOGFACILITY=none", []string{"HA_LOGFACILITY=none"}, "none", ""},
		{"HA_LOGFILE only", []string{"HA_LOGFILE=/var/log/ocf-csync.log"}, "", "/var/log/ocf-csync.log"},
	} {
		o := DaemonLogOptions(NewEnv(tc.env), "mirror", nil)
		if o.Facility != tc.facility || o.LogFile != tc.logfile {
			t.Errorf("%s: facility %q, logfile %q; want %q, %q", tc.name, o.Facility, o.LogFile, tc.facility, tc.logfile)
		}
	}
}

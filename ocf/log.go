package ocf

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// LogOptions say where ocf_log-style lines go. LogOptionsFromEnv fills them
// the way ocf-shellfuncs' ha_log decides.
type LogOptions struct {
	Tag       string    // "mirror(<instance>)", the syslog tag; [pid] is added
	Stderr    io.Writer // nil: no stderr output
	StderrTTY bool      // stderr is a terminal: log there and nowhere else
	Facility  string    // HA_LOGFACILITY ("daemon", "local0", ...); "" or "none": no syslog
	LogFile   string    // HA_LOGFILE, appended to when set
	Debug     bool      // HA_debug=1: DEBUG lines too
	Pid       int
	Now       func() time.Time
	// Syslog is the writer for syslog; nil means dial the local syslog
	// with Facility (tests put a buffer here).
	Syslog io.Writer
}

// LogOptionsFromEnv builds LogOptions for an agent called name (the link
// name, "mirror") from the OCF environment.
func LogOptionsFromEnv(e Env, name string, stderr io.Writer) LogOptions {
	return LogOptions{
		Tag:       name + "(" + e.Instance() + ")",
		Stderr:    stderr,
		StderrTTY: IsTerminal(stderr),
		Facility:  e.Get("HA_LOGFACILITY"),
		LogFile:   e.Get("HA_LOGFILE"),
		Debug:     e.Get("HA_debug") == "1",
		Pid:       os.Getpid(),
	}
}

// DaemonLogOptions are the long-running daemon's: as LogOptionsFromEnv,
// but when nothing says where logs go (no HA_LOGFACILITY, no HA_LOGFILE)
// and Pacemaker did not start it (by hand, a systemd unit, heartbeat's
// haresources), they go to syslog's daemon facility, which journald
// keeps, instead of a stderr nobody reads.
func DaemonLogOptions(e Env, name string, stderr io.Writer) LogOptions {
	o := LogOptionsFromEnv(e, name, stderr)
	_, facilitySet := e.Lookup("HA_LOGFACILITY")
	if !facilitySet && o.LogFile == "" && !e.UnderPacemaker() {
		o.Facility = "daemon"
	}
	return o
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// LogHandler is a slog.Handler printing "LEVEL: msg k=v" lines like ocf_log:
// to stderr when it is a terminal (and only there); otherwise to syslog
// when a facility is set and appended to HA_LOGFILE when set; to stderr when
// neither is.
type LogHandler struct {
	o      LogOptions
	out    *logOutputs
	prefix string // pre-formatted attributes from WithAttrs
	group  string
}

type logOutputs struct {
	mu     sync.Mutex
	syslog io.Writer
	dialed bool
}

// NewLogHandler returns a handler writing ocf_log-style lines as o says.
func NewLogHandler(o LogOptions) *LogHandler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Pid == 0 {
		o.Pid = os.Getpid()
	}
	return &LogHandler{o: o, out: &logOutputs{syslog: o.Syslog, dialed: o.Syslog != nil}}
}

// Enabled: INFO and up, DEBUG only with HA_debug=1.
func (h *LogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.o.Debug
}

// LevelName is ocf_log's word for a level: CRIT, ERROR, WARNING, INFO, DEBUG.
func LevelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError+4:
		return "CRIT"
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}

// Handle formats one record and writes it to every destination.
func (h *LogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(LevelName(r.Level))
	b.WriteString(": ")
	b.WriteString(r.Message)
	b.WriteString(h.prefix)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	line := b.String()

	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	if h.o.StderrTTY && h.o.Stderr != nil {
		_, err := io.WriteString(h.o.Stderr, line+"\n")
		return err
	}
	wrote := false
	if f := h.o.Facility; f != "" && f != "none" {
		if w := h.syslogWriter(); w != nil {
			h.writeSyslog(w, r.Level, line)
			wrote = true
		}
	}
	if h.o.LogFile != "" {
		// ha_log's format: "Nov 21 22:37:50  IPaddr2(vip)[15310]:    INFO: …"
		ts := h.o.Now().Format(time.Stamp)
		if f, err := os.OpenFile(h.o.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); err == nil {
			fmt.Fprintf(f, "%s  %s[%d]:    %s\n", ts, h.o.Tag, h.o.Pid, line)
			f.Close()
			wrote = true
		}
	}
	if !wrote && h.o.Stderr != nil {
		_, err := io.WriteString(h.o.Stderr, line+"\n")
		return err
	}
	return nil
}

func (h *LogHandler) syslogWriter() io.Writer {
	if !h.out.dialed {
		h.out.dialed = true
		// log/syslog writes "tag[pid]: msg", which gives mirror(inst)[pid].
		if w, err := syslog.New(facility(h.o.Facility)|syslog.LOG_INFO, h.o.Tag); err == nil {
			h.out.syslog = w
		}
	}
	return h.out.syslog
}

func (h *LogHandler) writeSyslog(w io.Writer, l slog.Level, line string) {
	sw, ok := w.(*syslog.Writer)
	if !ok {
		fmt.Fprintf(w, "%s[%d]: %s\n", h.o.Tag, h.o.Pid, line)
		return
	}
	switch {
	case l >= slog.LevelError+4:
		sw.Crit(line)
	case l >= slog.LevelError:
		sw.Err(line)
	case l >= slog.LevelWarn:
		sw.Warning(line)
	case l >= slog.LevelInfo:
		sw.Info(line)
	default:
		sw.Debug(line)
	}
}

// facility maps HA_LOGFACILITY names to syslog facilities (daemon when unknown).
func facility(name string) syslog.Priority {
	switch strings.ToLower(name) {
	case "kern":
		return syslog.LOG_KERN
	case "user":
		return syslog.LOG_USER
	case "mail":
		return syslog.LOG_MAIL
	case "auth":
		return syslog.LOG_AUTH
	case "authpriv":
		return syslog.LOG_AUTHPRIV
	case "syslog":
		return syslog.LOG_SYSLOG
	case "cron":
		return syslog.LOG_CRON
	}
	if n, ok := strings.CutPrefix(strings.ToLower(name), "local"); ok && len(n) == 1 && n[0] >= '0' && n[0] <= '7' {
		return syslog.LOG_LOCAL0 + syslog.Priority(n[0]-'0')<<3
	}
	return syslog.LOG_DAEMON
}

func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	key := a.Key
	if group != "" {
		key = group + "." + key
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, ga := range a.Value.Group() {
			appendAttr(b, key, ga)
		}
		return
	}
	v := a.Value.String()
	if v == "" || strings.ContainsAny(v, " \t\n\"=") {
		v = strconv.Quote(v)
	}
	b.WriteByte(' ')
	b.WriteString(key)
	b.WriteByte('=')
	b.WriteString(v)
}

// WithAttrs pre-formats attrs.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range attrs {
		appendAttr(&b, h.group, a)
	}
	h2 := *h
	h2.prefix = b.String()
	return &h2
}

// WithGroup qualifies later keys with name.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	if h2.group != "" {
		h2.group += "." + name
	} else {
		h2.group = name
	}
	return &h2
}

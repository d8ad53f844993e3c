package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"

	"ocf-csync/ocf"
)

type loggerKey struct{}

func withLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

func logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// newLogger is the command line's logger: warnings by default, errors only
// with -q, info with -v, debug with -vv.
func newLogger(w io.Writer, v int) *slog.Logger {
	level := slog.LevelWarn
	switch {
	case v < 0:
		level = slog.LevelError
	case v == 1:
		level = slog.LevelInfo
	case v >= 2:
		level = slog.LevelDebug
	}
	return slog.New(newCLIHandler(w, level))
}

// cliHandler prints "ocf-csync: warning: MSG k=v" lines, the way the
// command line prints its errors; slog's text handler formats the
// attributes (its time, level and msg are left out).
type cliHandler struct {
	slog.Handler // text handler writing the attributes into out.buf
	out          *cliOutput
}

type cliOutput struct {
	mu  sync.Mutex
	w   io.Writer
	buf bytes.Buffer
}

func newCLIHandler(w io.Writer, level slog.Leveler) *cliHandler {
	out := &cliOutput{w: w}
	drop := func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
			return slog.Attr{}
		}
		return a
	}
	return &cliHandler{Handler: slog.NewTextHandler(&out.buf, &slog.HandlerOptions{Level: level, ReplaceAttr: drop}), out: out}
}

func (h *cliHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.buf.Reset()
	if err := h.Handler.Handle(ctx, r); err != nil {
		return err
	}
	line := "ocf-csync: " + strings.ToLower(ocf.LevelName(r.Level)) + ": " + r.Message
	if attrs := strings.TrimSpace(h.out.buf.String()); attrs != "" {
		line += " " + attrs
	}
	_, err := io.WriteString(h.out.w, line+"\n")
	return err
}

func (h *cliHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &cliHandler{Handler: h.Handler.WithAttrs(as), out: h.out}
}

func (h *cliHandler) WithGroup(name string) slog.Handler {
	return &cliHandler{Handler: h.Handler.WithGroup(name), out: h.out}
}

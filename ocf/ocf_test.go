package ocf

import (
	"bytes"
	"testing"
)

func TestIsProbe(t *testing.T) {
	tests := []struct {
		env    []string
		action string
		want   bool
	}{
		{nil, "monitor", true},
		{[]string{"OCF_RESKEY_CRM_meta_interval=0"}, "monitor", true},
		{[]string{"OCF_RESKEY_CRM_meta_interval=20000"}, "monitor", false},
		{nil, "start", false},
	}
	for _, tt := range tests {
		if got := NewEnv(tt.env).IsProbe(tt.action); got != tt.want {
			t.Errorf("IsProbe(%v, %s) = %v, want %v", tt.env, tt.action, got, tt.want)
		}
	}
}

func TestExitReasonIsOneLine(t *testing.T) {
	var b bytes.Buffer
	WriteExitReason(&b, "", "bad\nconfig  line")
	if got, want := b.String(), "ocf-exit-reason:bad config line\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestEnv(t *testing.T) {
	e := NewEnv([]string{"OCF_ROOT=/usr/lib/ocf", "OCF_RESKEY_config=/etc/x.cfg", "OCF_RESKEY_CRM_meta_timeout=300000"})
	if !e.IsOCF() {
		t.Error("IsOCF false with OCF_ROOT set")
	}
	if v, _ := e.Param("config"); v != "/etc/x.cfg" {
		t.Errorf("Param(config) = %q", v)
	}
	if got := e.TimeoutMs(20000); got != 300000 {
		t.Errorf("TimeoutMs = %d", got)
	}
	if got := e.Instance(); got != "default" {
		t.Errorf("Instance = %q", got)
	}
	if NewEnv(nil).IsOCF() {
		t.Error("IsOCF true on empty env")
	}
}

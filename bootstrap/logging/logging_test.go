package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestPlainTextOutsideJournal(t *testing.T) {
	var b bytes.Buffer
	New(&b, slog.LevelInfo).Info("restarting containerd", "unit", "containerd.service")
	if !strings.Contains(b.String(), "restarting containerd") || !strings.Contains(b.String(), "unit=containerd.service") {
		t.Fatalf("got %q", b.String())
	}
}

func TestJournalFieldNames(t *testing.T) {
	for in, want := range map[string]string{"unit": "GVB_UNIT", "config-path": "GVB_CONFIG_PATH", "step.x": "GVB_STEP_X"} {
		if got := fieldName("", in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := fieldName("run", "step"); got != "GVB_RUN_STEP" {
		t.Errorf("grouped: %q", got)
	}
}

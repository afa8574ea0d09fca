package reconcile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/fsroot"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/nodepaths"
	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/redact"
)

// LastRunPath is on /run (tmpfs): recording a run must not make a healthy boot
// write to disk. It survives until the next boot, which runs the reconcile again.
const LastRunPath = nodepaths.LastRun

// Record is the last run as `status` shows it.
type Record struct {
	Report
	Release string `json:"release,omitempty"`
	// RepairsTotal counts repaired runs since boot (a Prometheus counter resets too).
	RepairsTotal int `json:"repairs_total"`
}

// LoadRecord reads the last run; none yet is the zero Record.
func LoadRecord(root fsroot.Root) (Record, error) {
	var rec Record
	b, err := root.ReadFile(LastRunPath)
	if errors.Is(err, fs.ErrNotExist) {
		return rec, nil
	}
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("last run record %s: %w", root.Path(LastRunPath), err)
	}
	return rec, nil
}

// SaveRecord stores rep as the last run and, when textfileDir is set, writes
// node-exporter textfile metrics.
func SaveRecord(root fsroot.Root, rep Report, release, textfileDir string) (Record, error) {
	prev, _ := LoadRecord(root)
	rec := Record{Report: rep, Release: release, RepairsTotal: prev.RepairsTotal}
	if rep.Outcome == Repaired {
		rec.RepairsTotal++
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return rec, err
	}
	// The record holds the config diff and error texts: readable by root only,
	// and scrubbed of credentials (URL userinfo and query values, registry auth).
	b = []byte(redact.ConfigSecrets(string(b)))
	if err := root.WriteFile(LastRunPath, append(b, '\n'), fsroot.WriteOptions{Mode: 0o600, ForceMode: true}); err != nil {
		return rec, err
	}
	if textfileDir != "" {
		if err := root.WriteFile(filepath.Join(textfileDir, "gvisor_bootstrap.prom"), metrics(rec), fsroot.WriteOptions{Mode: 0o644}); err != nil {
			return rec, fmt.Errorf("metrics textfile: %w", err)
		}
	}
	return rec, nil
}

func metrics(rec Record) []byte {
	var b bytes.Buffer
	ready := 0
	if rec.Outcome != Failed {
		ready = 1
	}
	fmt.Fprintf(&b, "# HELP gvisor_bootstrap_ready 1 when the last run left the node able to run gVisor pods.\n# TYPE gvisor_bootstrap_ready gauge\ngvisor_bootstrap_ready %d\n", ready)
	fmt.Fprintf(&b, "# HELP gvisor_bootstrap_last_run_timestamp_seconds When the last run started.\n# TYPE gvisor_bootstrap_last_run_timestamp_seconds gauge\ngvisor_bootstrap_last_run_timestamp_seconds %d\n", rec.Start.Unix())
	b.WriteString("# HELP gvisor_bootstrap_last_run_result Result of the last run.\n# TYPE gvisor_bootstrap_last_run_result gauge\n")
	for _, o := range []Outcome{Healthy, Repaired, Failed} {
		v := 0
		if rec.Outcome == o {
			v = 1
		}
		fmt.Fprintf(&b, "gvisor_bootstrap_last_run_result{result=%q} %d\n", o, v)
	}
	fmt.Fprintf(&b, "# HELP gvisor_bootstrap_repairs_total Runs that changed the node since boot.\n# TYPE gvisor_bootstrap_repairs_total counter\ngvisor_bootstrap_repairs_total %d\n", rec.RepairsTotal)
	fmt.Fprintf(&b, "# HELP gvisor_bootstrap_warnings Known problems that do not stop gVisor pods (e.g. a containerd release with gVisor bugs); see the journal or `gvisor-bootstrap status`.\n# TYPE gvisor_bootstrap_warnings gauge\ngvisor_bootstrap_warnings %d\n", len(rec.Warnings))
	fmt.Fprintf(&b, "# HELP gvisor_bootstrap_release_info The installed gVisor release.\n# TYPE gvisor_bootstrap_release_info gauge\ngvisor_bootstrap_release_info{release=%q} 1\n", rec.Release)
	return b.Bytes()
}

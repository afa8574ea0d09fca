// Package containerd registers the runsc runtime handler in containerd's config in
// whatever dialect the node uses, changing nothing else.
//
// # Dialects
//
// The table names come from the file itself and the containerd that reads it. The
// rules below were checked with `containerd config dump` of real containerd 1.7.35
// and 2.3.7 (see the tests; containerd 2 migrates old files at load time):
//
//   - containerd 1.x, `version = 2`: plugins."io.containerd.grpc.v1.cri"; no
//     version (read as 1): plugins.cri. Version 3 or 4 is refused (1.x fails to start).
//   - containerd 2.x, version 3 or 4: plugins."io.containerd.cri.v1.runtime" (2.3
//     also migrates old names in version 3 files, 2.0 to 2.2 do not).
//   - containerd 2.x, version 2 (and 1): containerd copies the old plugin's keys into
//     io.containerd.cri.v1.runtime only where that plugin lacks them, and for the
//     `containerd` table key by key: once cri.v1.runtime has a `runtimes` table, every
//     old-style runtime is ignored (AKS's containerd 2 images: `version = 2` with the
//     new names, where a runsc added the 1.x way vanishes), and a runsc added under
//     the new names to a file whose runtimes use the old names would hide all of
//     them (runc's SystemdCgroup lost). So the family that already holds runtimes
//     wins; with none, the one whose plugin table is present; else the old names.
//   - containerd 2.x, no version: plugins.cri replaces plugins."io.containerd.grpc.v1.cri"
//     during migration; a file with both is refused.
//   - containerd 1.x replaces its built-in runtimes with the file's list: a file that
//     lists no runtime gets the built-in runc written out next to runsc.
//
// # The config containerd loads
//
// The plan reads the whole config containerd loads — the file its unit starts
// it with (--config, CONTAINERD_CONFIG), then every import in containerd's load
// order — and simulates that release's merge (effective.go: 1.x replaces plugin
// sections, 2.0 to 2.2 merge then migrate once, 2.3+ migrate each file). The
// naming of the file it writes is the first whose simulated result loads the
// handlers as wanted and everything else as before; an imported file that
// would override the handlers is refused up front, naming it. The tests check
// the same with `config dump` of real 1.7, 2.0, 2.1, 2.2, 2.3 and 2.4.
//
// # Editing
//
// The editor works on the file's text: it removes every statement that defines
// keys under the managed handlers (runsc, runsc-kvm) in any naming (keeping the
// values of keys it does not own: runtime_type, runtime_path, options.TypeUrl
// and options.ConfigPath are the tool's, pod_annotations and the rest the user's) — [tables],
// dotted keys, inline values — and inserts one canonical block after the last
// runtime table (else at the end), in the file's quoting, indentation and line
// ends. Comments, order, quoting and dotted keys elsewhere survive byte for byte.
// Every result is checked before it is returned: it must parse, hold the wanted
// handlers, and equal the input everywhere else; a file already in the wanted
// state is returned untouched.
//
// # Time
//
// Planning is on the kubelet gate's path, so it is linear in the config's size
// and stops when the run's context is done (SIGTERM, the unit's start
// timeout). The statement index and the value tree come from one pass of
// go-toml's unstable parser (tomltree.go applies go-toml's rules; its
// toml.Unmarshal into a map is quadratic in the number of tables: 16 s for a
// 5 MB config). Decoded trees are never changed: the merge simulation and the
// comparisons share their subtrees instead of copying them, a run parses each
// file once, and the simulation's comparison reuses the tables the edit's
// self-check proved equal. BenchmarkPlan5MB, BenchmarkHealthyRun5MB.
package containerd

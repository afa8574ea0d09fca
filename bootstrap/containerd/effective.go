package containerd

import (
	"fmt"
	"maps"
	"reflect"
	"sort"
	"strings"
	"time"
	"unsafe"
)

// The config containerd loads is the main file merged with its imports, in an
// order and with migrations that depend on the release (read from containerd's
// cmd/containerd/server/config and plugins/cri/runtime, and checked with `config
// dump` of real 1.7, 2.0, 2.1, 2.2, 2.3 and 2.4 in the tests):
//
//   - 1.x: files are merged in load order; an imported file's plugin section
//     replaces the earlier one whole (per plugin name). No migration.
//   - 2.0 to 2.2: only version 1 files are migrated as they load (plugin names
//     become URIs); files are deep-merged (tables merged key by key, every other
//     value, arrays included, replaced); the merged config keeps the last
//     version any file set, and only then, below version 3, the CRI plugin copies
//     io.containerd.grpc.v1.cri's keys into io.containerd.cri.v1.runtime where
//     that plugin lacks them — once, for all files together. A drop-in that uses
//     the new names thus hides every runtime the main file declares under the old.
//   - 2.3 and later: every file below version 4 is migrated on its own before it
//     is merged (old names copied into the new where missing, per file).
//
// The simulation is what the plan uses to choose the dialect of the file it
// writes, to read runc's cgroup driver, and to prove that containerd would load
// the handlers as wanted and everything else as before.

// effectiveTree is the merged, migrated config containerd v would run with. The
// files' trees are not changed: the result shares their subtrees wherever the
// merge and the migration leave them as they are (copying a 5 MB config for
// every check was a large part of planning), so it must not be changed either.
func effectiveTree(files []loadedFile, v Version) map[string]any {
	out := map[string]any{}
	switch {
	case v.Major < 2:
		plugins := map[string]any{}
		for _, f := range files {
			for k, x := range f.Doc.tree {
				if k != "plugins" {
					out[k] = x
					continue
				}
				out["plugins"] = plugins
				src, _ := x.(map[string]any)
				for name, section := range src {
					plugins[name] = section
				}
			}
		}
		return out
	case v.Less(2, 3):
		out["version"] = int64(3)
		for _, f := range files {
			t := f.Doc.tree
			if fileVersion(t) <= 1 {
				t = v1Migrate(t)
				t["version"] = out["version"]
			}
			out = mergedTrees(out, t)
		}
		if fileVersion(out) < 3 {
			out = criMigrate(out)
			out["version"] = int64(3)
		}
		return out
	default:
		out["version"] = int64(4)
		for _, f := range files {
			t := f.Doc.tree
			if ver := fileVersion(t); ver < 4 {
				if ver <= 1 {
					t = v1Migrate(t)
				}
				t = criMigrate(t)
				t["version"] = int64(4)
			}
			out = mergedTrees(out, t)
		}
		return out
	}
}

// effectiveRuntimesPath is where the effective config holds the CRI runtimes.
func effectiveRuntimesPath(tree map[string]any, v Version) []string {
	switch {
	case v.Major >= 2:
		return familyV3.Runtimes()
	case fileVersion(tree) <= 1:
		return familyLegacy.Runtimes()
	default:
		return familyGRPC.Runtimes()
	}
}

func fileVersion(t map[string]any) int64 {
	n, _ := t["version"].(int64)
	return n
}

// mergedTrees is src deep-merged over dst as containerd 2 merges imported
// files: tables key by key, any other value (arrays too) replaced, empty ones
// included. Neither is changed: the result is a new table wherever both have
// one, and shares the rest.
func mergedTrees(dst, src map[string]any) map[string]any {
	out := maps.Clone(dst)
	for k, s := range src {
		sm, sok := s.(map[string]any)
		dm, dok := out[k].(map[string]any)
		if sok && dok {
			out[k] = mergedTrees(dm, sm)
			continue
		}
		out[k] = s
	}
	return out
}

// v1Migrate renames version 1's short plugin names (containerd's v1Migrate); only
// the CRI plugin matters here. It returns a new top-level table (t is not changed).
func v1Migrate(t map[string]any) map[string]any {
	t = maps.Clone(t)
	plugins, _ := t["plugins"].(map[string]any)
	if cri, ok := plugins["cri"]; ok {
		plugins = maps.Clone(plugins)
		delete(plugins, "cri")
		plugins[familyGRPC.Plugin[1]] = cri
		t["plugins"] = plugins
	}
	return t
}

// criMigrate is the CRI runtime plugin's migration below config version 3 (4
// from 2.3): io.containerd.grpc.v1.cri's keys copied into
// io.containerd.cri.v1.runtime where it lacks them, the `containerd` table key by
// key (so a runtimes table already there wins whole). It returns a new top-level
// table (t is not changed; the tables it changes are copies).
func criMigrate(t map[string]any) map[string]any {
	t = maps.Clone(t)
	plugins, _ := t["plugins"].(map[string]any)
	src, ok := plugins[familyGRPC.Plugin[1]].(map[string]any)
	if !ok {
		return t
	}
	plugins = maps.Clone(plugins)
	t["plugins"] = plugins
	dst, ok := plugins[familyV3.Plugin[1]].(map[string]any)
	if ok {
		dst = maps.Clone(dst)
	} else {
		dst = map[string]any{}
	}
	for k, x := range src {
		switch k {
		case "cni", "containerd", "sandbox_image", "registry", "image_decryption", "max_concurrent_downloads",
			"image_pull_progress_timeout", "image_pull_with_sync_fs", "stats_collect_period", "disable_tcp_service",
			"stream_server_address", "stream_server_port", "stream_idle_timeout", "enable_tls_streaming", "x509_key_pair_streaming":
			continue
		}
		if _, ok := dst[k]; !ok {
			dst[k] = x
		}
	}
	if c, ok := src["containerd"].(map[string]any); ok {
		nc, ok := dst["containerd"].(map[string]any)
		if ok {
			nc = maps.Clone(nc)
		} else {
			nc = map[string]any{}
		}
		for k, x := range c {
			switch k {
			case "snapshotter", "disable_snapshot_annotations", "discard_unpacked_layers":
				continue
			}
			if _, ok := nc[k]; !ok {
				nc[k] = x
			}
		}
		dst["containerd"] = nc
	}
	plugins[familyV3.Plugin[1]] = dst
	return t
}

// effectiveCheck proves a plan against the simulation: with the planned files
// containerd v loads the wanted handlers with the owned keys as wanted, and
// everything but the managed handlers exactly as it does now.
func effectiveCheck(before, after []loadedFile, v Version, wanted []Handler) error {
	b, a := effectiveTree(before, v), effectiveTree(after, v)
	rp := effectiveRuntimesPath(a, v)
	for _, h := range wanted {
		got, ok := lookup(a, append(append([]string{}, rp...), h.Name))
		if !ok {
			return fmt.Errorf("containerd %s would not load the %q handler from the planned files", v, h.Name)
		}
		m, _ := got.(map[string]any)
		want := h.want()
		for _, k := range ownedKeys {
			w, _ := lookup(want, k)
			g, _ := lookup(m, k)
			if g != w {
				return fmt.Errorf("containerd %s would load the %q handler with %s = %v, not %v", v, h.Name, dottedKey(k, false), g, w)
			}
		}
	}
	// Copies of the top-level tables: the trees share everything else with
	// the documents.
	b, a = maps.Clone(withoutManaged(b)), maps.Clone(withoutManaged(a))
	delete(b, "imports")
	delete(a, "imports")
	if len(before) > 0 && !hasStatements(before[0].Doc) {
		// A new main file: it gets the release's own version line.
		delete(b, "version")
		delete(a, "version")
	}
	if v.Major < 2 {
		// containerd 1.x's built-in runc, written out next to runsc in a file
		// that listed no runtime (the list replaces the built-in one).
		runc := append(append([]string{}, rp...), "runc")
		if _, had := lookup(b, runc); !had {
			if got, _ := lookup(a, runc); treesEqual(got, builtinRunc17()) {
				a, _ = withoutPath(a, runc)
			}
		}
	}
	memo := provenEqual{}
	for _, f := range after {
		for k := range f.Doc.proven {
			memo[k] = struct{}{}
		}
	}
	if !treesEqualMemo(b, a, memo) {
		return fmt.Errorf("containerd %s would load other settings differently with the planned files (runtimes under one naming would hide those under the other)", v)
	}
	return nil
}

// treesEqual compares decoded TOML values (NaN equal to NaN), in time linear in
// their size: go-cmp's reflection walks deep arrays far too slowly for the
// kubelet gate's path.
func treesEqual(a, b any) bool { return treesEqualMemo(a, b, nil) }

// provenEqual are pairs of large tables (one tree's, another's) found equal.
// Trees are never changed once decoded, so a later comparison of trees that
// share those tables (the load simulation after the edit's self-check) need
// not walk them again: the self-check and the simulation each walked the
// whole of a 5 MB config.
type provenEqual map[[2]unsafe.Pointer]struct{}

// provenMin is the size from which a table's comparison is remembered.
const provenMin = 16

// treesEqualMemo is treesEqual that consults and extends memo (nil: none).
func treesEqualMemo(a, b any, memo provenEqual) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		var key [2]unsafe.Pointer
		remember := false
		if len(x) >= provenMin {
			// One table shared by both trees (a file the plan does not
			// change), or a pair compared before.
			key = [2]unsafe.Pointer{reflect.ValueOf(x).UnsafePointer(), reflect.ValueOf(y).UnsafePointer()}
			if key[0] == key[1] {
				return true
			}
			if _, ok := memo[key]; ok {
				return true
			}
			remember = memo != nil
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !treesEqualMemo(xv, yv, memo) {
				return false
			}
		}
		if remember {
			memo[key] = struct{}{}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !treesEqualMemo(x[i], y[i], memo) {
				return false
			}
		}
		return true
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || x != x && y != y)
	case time.Time:
		// Each decode makes its own *time.Location for an offset: compare the
		// instant and the zone, not the pointer.
		y, ok := b.(time.Time)
		return ok && reflect.DeepEqual(x, y)
	default:
		return a == b
	}
}

// treeDifference names the first place where two trees that treesEqual finds
// different differ, for an error message. It is linear, as treesEqual is
// (go-cmp's diff of a config with a deeply nested array does not end).
func treeDifference(a, b any) string {
	var path []string
	for {
		switch x := a.(type) {
		case map[string]any:
			y, ok := b.(map[string]any)
			if !ok {
				return differs(path, a, b)
			}
			keys := make([]string, 0, len(x)+len(y))
			for k := range x {
				keys = append(keys, k)
			}
			for k := range y {
				if _, ok := x[k]; !ok {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			next := ""
			for _, k := range keys {
				xv, xok := x[k]
				yv, yok := y[k]
				if !xok || !yok {
					return differs(append(path, k), xv, yv)
				}
				if !treesEqual(xv, yv) {
					next = k
					break
				}
			}
			if next == "" {
				return "no difference found"
			}
			path, a, b = append(path, next), x[next], y[next]
		case []any:
			y, ok := b.([]any)
			if !ok || len(x) != len(y) {
				return differs(path, a, b)
			}
			i := 0
			for i < len(x) && treesEqual(x[i], y[i]) {
				i++
			}
			if i == len(x) {
				return "no difference found"
			}
			path, a, b = append(path, fmt.Sprintf("[%d]", i)), x[i], y[i]
		default:
			return differs(path, a, b)
		}
	}
}

// differs says what one place holds before and after, briefly.
func differs(path []string, a, b any) string {
	short := func(v any) string {
		switch t := v.(type) {
		case nil:
			return "absent"
		case map[string]any:
			return fmt.Sprintf("a table of %d keys", len(t))
		case []any:
			return fmt.Sprintf("an array of %d values", len(t))
		}
		s := fmt.Sprintf("%v", v)
		if len(s) > 80 {
			s = s[:80] + "..."
		}
		return fmt.Sprintf("%s (%T)", s, v)
	}
	if len(path) > 12 {
		path = append(append(append([]string{}, path[:5]...), fmt.Sprintf("(%d more)", len(path)-10)), path[len(path)-5:]...)
	}
	where := strings.Join(path, ".")
	if where == "" {
		where = "the whole file"
	}
	return fmt.Sprintf("%s was %s, would be %s", where, short(a), short(b))
}

package cli

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config"
)

// Version is set at build time with -ldflags "-X .../bootstrap/cli.Version=v1.2.3".
var Version = "dev"

func init() {
	register(&Command{
		Name:    "version",
		Summary: "print the tool's version and the gVisor release it pins by default",
		Example: "  gvisor-bootstrap version\n  gvisor-bootstrap version --json",
		Run: func(ctx context.Context, g *Globals, args []string) (int, error) {
			commit := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						commit = s.Value
					}
				}
			}
			v := map[string]string{
				"version": Version, "commit": commit, "go": runtime.Version(),
				"platform":        runtime.GOOS + "/" + runtime.GOARCH,
				"default_release": config.DefaultRelease,
			}
			g.Emit(v, func(w io.Writer) {
				fmt.Fprintf(w, "gvisor-bootstrap %s (%s, %s %s), pins gVisor release %s\n", Version, commit, v["go"], v["platform"], config.DefaultRelease)
			})
			return ExitOK, nil
		},
	})
}

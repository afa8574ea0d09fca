// Command gvisor-bootstrap makes a Kubernetes node safe for untrusted workloads with
// gVisor. See README.md.
package main

import (
	"os"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}

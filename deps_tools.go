//go:build tools

// Package deps pins the libraries the project builds on so go.mod keeps them while
// the packages that use them are written (`go mod tidy` honours build tags).
package deps

import (
	_ "github.com/coreos/go-systemd/v22/daemon"
	_ "github.com/coreos/go-systemd/v22/dbus"
	_ "github.com/coreos/go-systemd/v22/journal"
	_ "github.com/gofrs/flock"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/hashicorp/go-getter/v2"
	_ "github.com/pmezard/go-difflib/difflib"
	_ "github.com/schollz/progressbar/v3"
	_ "google.golang.org/grpc"
	_ "k8s.io/api/apps/v1"
	_ "k8s.io/api/node/v1"
	_ "k8s.io/cri-api/pkg/apis/runtime/v1"
	_ "sigs.k8s.io/yaml"
)

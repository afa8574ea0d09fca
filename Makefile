# gvisor-bootstrap — see README.md.
SHELL := /bin/bash
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/cli.Version=$(VERSION) \
  -X github.com/gvisor-bootstrap/gvisor-bootstrap/bootstrap/config.ImageTag=$(VERSION)
GO_BUILD := CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)'
CACHE := $(CURDIR)/.cache
export GVB_TEST_BIN := $(CACHE)/bin

.PHONY: build build-all tools tools-k8s e2e-quick test test-short fuzz bench e2e demo image render clean

build: ## bin/gvisor-bootstrap, static
	$(GO_BUILD) -o bin/gvisor-bootstrap ./cmd/gvisor-bootstrap

build-all: ## linux/amd64 and linux/arm64
	GOOS=linux GOARCH=amd64 $(GO_BUILD) -o bin/gvisor-bootstrap-linux-amd64 ./cmd/gvisor-bootstrap
	GOOS=linux GOARCH=arm64 $(GO_BUILD) -o bin/gvisor-bootstrap-linux-arm64 ./cmd/gvisor-bootstrap

tools: ## build the real runsc, shim, containerd 1.7/2.x and crictl into .cache/bin
	test/tools/build-binaries.sh

tools-k8s: ## build the real Kubernetes (apiserver, kcm, scheduler, kubelet, kubectl) and etcd for the e2e cluster
	test/tools/build-k8s.sh

test: build tools ## the whole suite against the real programs
	go vet ./...
	go test -count=1 -timeout 30m ./...
	$(MAKE) fuzz FUZZTIME=20s

test-short: ## unit tests only (no real containerd, packer, cloud-init)
	GVB_TEST_BIN= go test -short ./...

FUZZTIME ?= 30s
fuzz: ## bounded fuzzing of the config editor and its TOML tree, the tool's config parser and the bzip2 decoder
	go test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./bootstrap/config
	go test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) ./bootstrap/bz2
	go test -run '^$$' -fuzz '^FuzzTreeMatchesUnmarshal$$' -fuzztime $(FUZZTIME) ./bootstrap/containerd
	@for p in $$(grep -rl --include='*_test.go' '^func FuzzEdit' bootstrap | xargs -r -n1 dirname | sort -u); do \
	  echo "fuzz $$p"; go test -run '^$$' -fuzz '^FuzzEdit$$' -fuzztime $(FUZZTIME) ./$$p || exit 1; done

bench: build tools ## benchmarks; figures go in README.md
	go test -run '^$$' -bench . -benchmem -count 5 ./...
	@if [ -x test/bench/run.sh ]; then test/bench/run.sh; fi
	@if [ -x test/bench/bundle.sh ]; then test/bench/bundle.sh; fi

e2e: build tools tools-k8s ## real nodes in qemu joined to a real Kubernetes control plane (+ stand-in scenarios 5, 6)
	test/e2e/run.sh

e2e-quick: build tools ## the stand-in scenarios 1-6 only (a kubelet stand-in, no cluster): the fast path when only the node changes
	test/e2e/run.sh --only 1,2,3,4,5,6

demo: build tools tools-k8s ## a real cluster: one node joins from customData, a pod runs in gVisor
	test/e2e/run.sh --demo

# The DaemonSet's image, without docker: an OCI index (linux/amd64 + linux/arm64) of the
# static binary and CA certificates, tagged $(VERSION), reproducible for a commit
# (SOURCE_DATE_EPOCH = its time). bin/gvisor-bootstrap-image.tar is an OCI layout
# tarball (`ctr -n k8s.io images import bin/gvisor-bootstrap-image.tar`); REGISTRY=host/repo pushes.
IMAGE_REPO ?= ghcr.io/gvisor-bootstrap/gvisor-bootstrap
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
image: build-all ## the DaemonSet's OCI image (bin/gvisor-bootstrap-image.tar); REGISTRY=... also pushes
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) go run ./cmd/gvisor-bootstrap-image --tag $(VERSION) --repository $(IMAGE_REPO) \
	  --binary amd64=bin/gvisor-bootstrap-linux-amd64 --binary arm64=bin/gvisor-bootstrap-linux-arm64 \
	  --layout bin/oci --tar bin/gvisor-bootstrap-image.tar $(if $(REGISTRY),--push $(REGISTRY))

azure-image: ## build the Azure Compute Gallery image (needs Azure credentials; see packer/README.md)
	packer/build-azure.sh

render: build ## regenerate the committed manifests/ and cloud-init/ from the defaults
	test/tools/render-committed.sh

clean:
	rm -rf bin

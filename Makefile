# The vSphere CNS CSI driver. `make run` starts it on the embedded vCenter;
# `make test` runs every test. Both install what they need first.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN := bin
# Debian packages the node plugin and its tests run: mount, blkid, losetup,
# mkfs/fsck/resize for ext4 and xfs.
DEB_PACKAGES := util-linux mount e2fsprogs xfsprogs
NEED_CMDS := losetup blkid mkfs.ext4 mkfs.xfs resize2fs xfs_growfs
RUN_DIR ?= /tmp/vsphere-csi
TEST_TIMEOUT ?= 12m

.DEFAULT_GOAL := all
.PHONY: help all deps build run demo unit test verify chart-test manifests image bench clean e2e conformance fuzz

# Each target's line ends with "## [cost; root?] what it does": make help lists them.
help: ## [instant] this list: each target, what it costs, whether it needs root
	@awk -F':.*## ' '/^[a-z0-9-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

all: build ## [~1 min cold] the same as build

# deps installs the Debian packages when a command is missing (as root, as
# on CI) and downloads the Go modules.
deps: ## [root if a package is missing] Debian packages (apt-get) and Go modules
	@missing=""; for c in $(NEED_CMDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: missing$$missing; installing $(DEB_PACKAGES)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "deps: run as root (apt-get) or install: $(DEB_PACKAGES)"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; \
	fi
	@$(GO) mod download

# build: vsphere-csi with the simulator tag, so that --simulator (make run) works; the image
# (Dockerfile) builds it the same way without the tag, so it holds no embedded vCenter.
build: deps ## [~1 min cold] bin/vsphere-csi (with the embedded vCenter: -tags simulator) and bin/vsphere-sim
	CGO_ENABLED=0 $(GO) build -tags simulator -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/vsphere-csi ./cmd/vsphere-csi
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/vsphere-sim ./cmd/vsphere-sim

# run: the driver (controller and node) on the embedded vCenter, serving CSI
# on $(RUN_DIR)/csi.sock until Ctrl-C.
run: build ## [root: loop devices, mounts] the driver on the embedded vCenter, CSI on RUN_DIR/csi.sock, until Ctrl-C
	$(BIN)/vsphere-csi --simulator --endpoint unix://$(RUN_DIR)/csi.sock --simulator-dir $(RUN_DIR)/vcenter -v 2

# demo: the getting-started walkthrough told step by step against the driver on the
# embedded vCenter (a Gold 5Gi volume: create, attach, format, mount, write,
# detach, re-attach, read back, delete).
demo: build ## [~1 min; root] the getting-started walkthrough, step by step, on the embedded vCenter
	$(GO) run ./cmd/vsphere-demo --driver $(BIN)/vsphere-csi

# verify: what a change must pass before it is committed, in under a minute
# warm: go vet of every module of ours, gofmt, the plain manifests generated
# from the chart, shellcheck of the scripts, go.mod/go.sum tidy. The e2e tools
# modules (test/e2e/tools/*) only pin third-party tools: their builds use
# -mod=readonly, which refuses a go.sum that does not match.
TIDY_MODULES := . test/chart test/e2e
verify: ## [<1 min warm; root if shellcheck is missing] vet, gofmt, manifests in sync, shellcheck, go mod tidy
	$(GO) vet ./...
	$(GO) vet -tags simulator ./cmd/vsphere-csi ./pkg/app
	cd test/chart && $(GO) vet ./...
	cd test/e2e && $(GO) vet ./... && $(GO) vet -tags e2e_chart . && $(GO) vet -tags e2e_conformance .
	@out=$$(gofmt -l cmd pkg test); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	cd test/chart && $(GO) run ./cmd/render-manifests --check
	@command -v shellcheck >/dev/null || { \
	  if [ "$$(id -u)" != 0 ]; then echo "verify: install shellcheck (apt-get install shellcheck) or run as root"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; }
	shellcheck hack/*.sh hack/e2e/*.sh .ci/run
	@for m in $(TIDY_MODULES); do (cd $$m && $(GO) mod tidy -diff) || { echo "verify: go mod tidy needed in $$m"; exit 1; }; done

# unit: the fast tier, seconds: handler logic against an in-memory vCenter
# client (pkg/vcenter/vcentertest), parsing, the node code on its fake;
# every test that starts the embedded vCenter or needs root skips under
# -short, saying so. make test runs everything.
unit: deps ## [seconds] the fast tier: handlers on an in-memory vCenter, parsing, the node fake (go test -short)
	$(GO) test -short -count=1 ./pkg/...

test: deps verify chart-test ## [~8 min; root: loop devices, mounts, FUSE] every test but e2e: unit, embedded vCenter, csi-sanity, scenarios, chart
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(GO) test -count=1 -tags simulator ./cmd/vsphere-csi ./pkg/app
	cd test/e2e && $(GO) test -count=1 ./internal/... ./cmd/...

# The Helm chart: lint, render, strict decoding, RBAC and image checks, the
# plain manifests in sync (a module of its own: test/chart).
chart-test: ## [~30 s] the Helm chart: lint, render, strict decoding, RBAC, images, manifests in sync
	cd test/chart && $(GO) test -count=1 ./...

# manifests regenerates deploy/kubernetes from the chart.
manifests: ## [seconds] regenerate deploy/kubernetes from the chart (make verify checks it)
	cd test/chart && $(GO) run ./cmd/render-manifests

# e2e: the driver through real Kubernetes on this machine (hack/e2e.sh, as root): builds
# Kubernetes (the version test/e2e/tools/kube/go.mod requires), the CSI sidecars and helm
# from the Go module proxy once (cached in ~/.cache/vsphere-csi-e2e), starts etcd, the
# control plane, containerd, kubelet, the embedded vCenter and the driver with its sidecars
# as processes on 127.0.0.1, runs test/e2e, and tears it all down (also when a test
# fails). E2E_RUN=regexp picks tests.
e2e: ## [~11 min warm, 21-36 cold; root] the driver through real Kubernetes built here (E2E_RUN=regexp picks tests)
	GO=$(GO) hack/e2e.sh

# conformance: Kubernetes' own external storage e2e suite (k8s.io/kubernetes test/e2e/storage,
# the version of test/e2e/tools/kube) against the chart on the e2e cluster's three nodes, with
# the test-driver manifests of test/e2e/conformance (hack/e2e/conformance.sh). It builds the
# suite, ginkgo and agnhost once (cached beside the other e2e tools), brings the cluster up,
# runs, tears down. CONFORMANCE_SET=full (default) runs every selected test and writes
# docs/conformance.md; CONFORMANCE_SET=ci is the subset .ci/run runs. CONFORMANCE_FOCUS=regexp
# runs only the tests it matches (a ginkgo focus; docs/conformance.md is then left alone).
CONFORMANCE_SET ?= full
CONFORMANCE_FOCUS ?=
conformance: ## [~29 min warm (full), ~4 (ci), +3 to build the suite; root] Kubernetes' storage e2e suite against the driver; writes docs/conformance.md
	GO=$(GO) CONFORMANCE_SET=$(CONFORMANCE_SET) CONFORMANCE_FOCUS='$(CONFORMANCE_FOCUS)' \
	  CONFORMANCE_REPORT=$(if $(CONFORMANCE_FOCUS),,$(if $(filter full,$(CONFORMANCE_SET)),$(CURDIR)/docs/conformance.md)) hack/e2e.sh conformance

# image needs a Docker engine (none on our machines).
image: ## [needs a Docker engine] the driver's image
	docker build --build-arg VERSION=$(VERSION) -t vsphere-csi:$(VERSION) .

# fuzz: each fuzz target for FUZZTIME (make test runs their seed corpora):
# csi-vsphere.conf, the vCenter thumbprint, StorageClass parameters, snapshot
# IDs, capacity ranges, volume capabilities, topology requirements, publish
# contexts, ListVolumes/ListSnapshots paging, disk UUIDs, NFS mount options.
FUZZTIME ?= 30s
fuzz: ## [FUZZTIME per target, 30 s default] each fuzz target (make test runs their seeds)
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./pkg/config
	$(GO) test -run '^$$' -fuzz '^FuzzThumbprint$$' -fuzztime $(FUZZTIME) ./pkg/config
	$(GO) test -run '^$$' -fuzz '^FuzzVolumeParams$$' -fuzztime $(FUZZTIME) ./pkg/driver
	$(GO) test -run '^$$' -fuzz '^FuzzSnapshotID$$' -fuzztime $(FUZZTIME) ./pkg/driver
	$(GO) test -run '^$$' -fuzz '^FuzzCapacityRange$$' -fuzztime $(FUZZTIME) ./pkg/driver
	$(GO) test -run '^$$' -fuzz '^FuzzVolumeCapability$$' -fuzztime $(FUZZTIME) ./pkg/driver
	$(GO) test -run '^$$' -fuzz '^FuzzTopologyRequirement$$' -fuzztime $(FUZZTIME) ./pkg/driver
	$(GO) test -run '^$$' -fuzz '^FuzzPublishContext$$' -fuzztime $(FUZZTIME) ./pkg/driver
	$(GO) test -run '^$$' -fuzz '^FuzzListPaging$$' -fuzztime $(FUZZTIME) ./pkg/driver
	$(GO) test -run '^$$' -fuzz '^FuzzDiskUUID$$' -fuzztime $(FUZZTIME) ./pkg/node
	$(GO) test -run '^$$' -fuzz '^FuzzNFSMountOptions$$' -fuzztime $(FUZZTIME) ./pkg/node

# bench: the Go benchmarks (round trips per call, NodeStage, memory), then
# vsphere-bench: bursts of CreateVolume, publish, unpublish and a drain under
# the embedded vCenter's realistic latency (medians against the model's
# limit), and the scale measure (10,000 volumes, 100 node VMs). It prints
# the tables and writes them to docs/bench/results.md with the plot
# docs/bench/publish-burst.svg. BENCH_FLAGS adds flags (-runs, -idle, ...).
BENCH_FLAGS ?=
bench: deps ## [~40 min] Go benchmarks and vsphere-bench; writes docs/bench/results.md
	$(GO) test -run '^$$' -bench . -benchtime 20x -count 5 ./pkg/... ./test/...
	@mkdir -p docs/bench
	$(GO) run ./test/bench/cmd/vsphere-bench -runs 3 -md docs/bench/results.md -svg docs/bench/publish-burst.svg $(BENCH_FLAGS)

clean: ## [instant] remove bin/
	rm -rf $(BIN)

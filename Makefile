# SPDX-License-Identifier: Apache-2.0

# flowtap — build, generate, test, bench.
GO      ?= go
# Build information (internal/buildinfo), set at link time: the semantic
# version from the git tags (internal/release/version.sh), the commit, its
# time (SOURCE_DATE_EPOCH: also every timestamp in the release artefacts) and
# whether tracked files are modified. Each can be overridden: make VERSION=v1.2.3.
VERSION ?= $(shell sh internal/release/version.sh)
COMMIT  ?= $(shell git rev-parse -q --verify HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
DIRTY   ?= $(shell git rev-parse -q --verify HEAD >/dev/null 2>&1 && { git diff --quiet HEAD -- && echo false || echo true; })
BUILDINFO = github.com/flowtap/flowtap/internal/buildinfo
LDFLAGS  = -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT) \
	-X $(BUILDINFO).date=$(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ) -X $(BUILDINFO).dirty=$(DIRTY)
# Release artefacts (tools/README.md): platforms, staging directory for the
# cross-compiled binaries, output directory.
RELEASE_PLATFORMS ?= linux/amd64,linux/arm64
RELEASE_BIN ?= bin/release
DIST ?= dist
RELEASE_CMDS = ./cmd/flowtap $(patsubst %,./%,$(wildcard cmd/flowtap-sink-*))
RELEASE_ARGS = -root $(CURDIR) -version $(VERSION) -commit $(COMMIT) -epoch $(SOURCE_DATE_EPOCH) \
	-bin $(abspath $(RELEASE_BIN)) -out $(abspath $(DIST)) -platforms $(RELEASE_PLATFORMS)
# Generated files: bpf2go output and protobuf code. Committed; CI checks sync.
GENERATED := bpf/flowtap_bpfel.go bpf/flowtap_bpfel.o plugins/internal/wire/proto/sink.pb.go plugins/internal/wire/proto/sink_grpc.pb.go
# The Go modules of flowtap's code: flowtap itself, the wire protocol the
# host and the SDK share, the sink SDK, and the example third-party sink
# (tools/ is the release tooling's, with its own targets). `go test ./...`
# at the root covers the first only; vet, test and fuzz walk all four.
MODULES := . plugins/internal/wire plugins/sdk examples/countsink examples/fleet

.PHONY: all build run generate check-generated docs check-docs test test-short test-tools test-kernels fuzz bench deps vet clean \
	release-bins dist image spdx check-spdx

all: build

## build: every binary into bin/ (flowtap and one flowtap-sink-<name> per built-in sink)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

## run: build, then run flowtap on its embedded default (needs root)
run: build
	./bin/flowtap run

## generate: rebuild the BPF objects (clang, libbpf-dev) and the protobuf code (protoc)
generate:
	$(GO) generate ./bpf/
	cd plugins/internal/wire/proto && $(GO) generate .

## check-generated: regenerate and fail if anything committed differs
check-generated: generate
	@git diff --exit-code -- $(GENERATED) || { echo "generated code is out of date: run 'make generate' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- bpf plugins/internal/wire/proto)" || { git status --porcelain -- bpf plugins/internal/wire/proto; echo "generate left untracked or modified files" >&2; exit 1; }

## docs: regenerate docs/events/ (one manual page per event) from the event catalogue
docs:
	$(GO) run ./cmd/flowtap man --dir docs/events

## check-docs: fail if docs/events/ differs from what the catalogue generates
check-docs:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(GO) run ./cmd/flowtap man --dir "$$tmp" && \
	diff -r -x README.md "$$tmp" docs/events || { echo "docs/events/ is out of date: run 'make docs' and commit" >&2; exit 1; }

## vet: gofmt, go vet and staticcheck (the version go.mod's tool directive pins), in every module
vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed" >&2; exit 1; }
	@sc=$$($(GO) tool -n staticcheck) && for m in $(MODULES); do \
		echo "vet $$m"; (cd $$m && GOWORK=off $(GO) vet ./... && GOWORK=off $$sc ./...) || exit 1; \
	done

## test: every test of every module, privileged ones included (run as root; CI=true makes a missing privilege fail)
test: vet build
	@for m in $(MODULES); do \
		echo "test $$m"; (cd $$m && GOWORK=off $(GO) test -race -count=1 -timeout 20m ./...) || exit 1; \
	done
	$(MAKE) test-tools

## test-tools: vet and test the tools module (release packing, Helm chart and manifests)
test-tools:
	cd tools && $(GO) vet ./... && $(GO) test -count=1 -timeout 15m ./...

## release-bins: cross-compile flowtap and every sink plugin, static and reproducible, into $(RELEASE_BIN)/<os>_<arch>/
release-bins:
	@for p in $$(echo $(RELEASE_PLATFORMS) | tr , ' '); do \
		os=$${p%/*}; arch=$${p#*/}; out=$(RELEASE_BIN)/$${os}_$${arch}; \
		echo "build $$p -> $$out"; rm -rf $$out; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -buildvcs=false \
			-ldflags '-s -w $(LDFLAGS)' -o $$out/ $(RELEASE_CMDS) || exit 1; \
	done

## dist: release archives per platform, a CycloneDX SBOM and SHA256SUMS in $(DIST)/, byte-identical for a commit
dist: release-bins
	@test "$(DIRTY)" != true || echo "dist: warning: tracked files are modified: the binaries report 'modified tree: true'" >&2
	@mkdir -p $(DIST) && rm -f $(DIST)/flowtap_*.tar.gz $(DIST)/flowtap_*_sbom.cdx.json
	cd tools && $(GO) run ./cmd/flowtap-release dist $(RELEASE_ARGS)
	@cat $(DIST)/SHA256SUMS

## image: an OCI image archive per platform in $(DIST)/ (static binaries on scratch, non-root), no daemon or registry
image: release-bins
	@mkdir -p $(DIST) && rm -f $(DIST)/flowtap_*.oci.tar
	cd tools && $(GO) run ./cmd/flowtap-release image $(RELEASE_ARGS)
	@cat $(DIST)/SHA256SUMS

## spdx: add an SPDX-License-Identifier header to every source file that lacks one (FILES=... limits it)
spdx:
	cd tools && $(GO) run ./cmd/spdx -root $(CURDIR) -fix $(abspath $(FILES))

## check-spdx: fail on a source file without an SPDX-License-Identifier header
check-spdx:
	cd tools && $(GO) run ./cmd/spdx -root $(CURDIR)

## test-kernels: the BPF tests and the ground truth on Debian's 5.10, 6.1 and 6.12 cloud kernels under qemu and on this kernel (root; see internal/kernels/README.md)
## (KERNELS=bookworm,host runs some of them)
test-kernels:
	$(GO) run ./internal/kernels/cmd/test-kernels $(if $(KERNELS),-kernels $(KERNELS))

## fuzz: a short run of every fuzz target, in every module
fuzz:
	@for m in $(MODULES); do (cd $$m && for pkg in $$(GOWORK=off $(GO) list ./...); do \
		for t in $$(GOWORK=off $(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$t in $$pkg"; GOWORK=off $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime 15s $$pkg || exit 1; \
		done; \
	done) || exit 1; done

## bench: the figures the performance issues name, as one table (root; about 3 minutes; raw output in $(BENCH_OUT))
BENCH_OUT ?= bin/bench.txt
bench:
	@mkdir -p $(dir $(BENCH_OUT))
	@echo "bench: measuring with and without flowtap (about 3 minutes); raw output in $(BENCH_OUT)" >&2
	@{ $(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 10m ./internal/perf/; \
	   $(GO) test -run '^$$' -bench '^BenchmarkTrackerLoopback$$' -benchmem -cpu 1 -count 1 ./derive/; } >$(BENCH_OUT) 2>&1; \
	$(GO) run ./internal/perf/benchtable <$(BENCH_OUT)

## deps: the Debian packages that generate and the tests need (root)
deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang llvm libbpf-dev bpftool protobuf-compiler iproute2 iperf3 tcpdump bpftrace >/dev/null
	@# release tests: the image under podman (runc: crun refuses hybrid cgroups), systemd-analyze, setcap, kill, strace, setpriv
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc systemd libcap2-bin procps strace util-linux >/dev/null
	@# workload identity tests: containerd (with ctr and its runc shim) and Docker Engine, started by the tests themselves
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd docker.io >/dev/null
	@# community_id against Suricata's: suricata 7 from bookworm-backports, through a private sources list (the system's stay as they are)
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && mkdir -p "$$d/lists/partial" && \
	printf 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-backports main\n' >"$$d/sources.list" && \
	o="-o Dir::Etc::sourcelist=$$d/sources.list -o Dir::Etc::sourceparts=/dev/null -o Dir::State::Lists=$$d/lists" && \
	apt-get $$o update -qq && DEBIAN_FRONTEND=noninteractive apt-get $$o install -y -qq -t bookworm-backports suricata >/dev/null
	@# metrics tests: Debian's prometheus and promtool, unpacked rather than installed (the package
	@# starts a Prometheus service on :9090, which no test wants); the tests start their own
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && chmod 755 "$$tmp" && cd "$$tmp" && apt-get download -qq prometheus && \
		dpkg-deb -x prometheus_*.deb root && install -m 0755 root/usr/bin/prometheus root/usr/bin/promtool /usr/local/bin/
	@# the kernel matrix (make test-kernels): qemu without the firmware and tools it recommends
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null

clean:
	rm -rf bin/ $(DIST)/

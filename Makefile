# flowtap — build, generate, test, bench.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/flowtap/flowtap/internal/buildinfo.Version=$(VERSION)
# Generated files: bpf2go output and protobuf code. Committed; CI checks sync.
GENERATED := bpf/flowtap_bpfel.go bpf/flowtap_bpfel.o plugins/internal/wire/proto/sink.pb.go plugins/internal/wire/proto/sink_grpc.pb.go
# The Go modules of this repository: flowtap itself, the wire protocol the
# host and the SDK share, the sink SDK, and the example third-party sink.
# `go test ./...` at the root covers the first only; vet and test walk all.
MODULES := . plugins/internal/wire plugins/sdk examples/countsink

.PHONY: all build run generate check-generated docs check-docs test test-short fuzz bench deps vet clean

all: build

## build: every binary into bin/ (flowtap and one flowtap-sink-<name> per built-in sink)
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

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
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang llvm libbpf-dev bpftool protobuf-compiler iproute2 iperf3 tcpdump >/dev/null

clean:
	rm -rf bin/

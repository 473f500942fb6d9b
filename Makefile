# TCC build. Every target is safe to re-run.
#
# cgo and the "seccomp" build tag are required: without the tag
# libcontainer builds without seccomp support, which kernel/seccomp refuses
# at compile time.

GO        ?= go
BIN       := bin
export CGO_ENABLED := 1
export GOFLAGS     := -tags=seccomp -buildvcs=false

# apt packages a fresh Debian machine lacks for build, test and generate.
APT_PKGS := libseccomp-dev pkg-config gcc clang llvm libbpf-dev musl-tools strace

CELL_DIRS := $(wildcard cells/examples/*/ test/cells/*/)

.PHONY: all deps build cells test test-unit test-root bench demo lint generate conformance clean

all: build

deps:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || \
	  { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	fi

build: $(BIN)/tccd $(BIN)/tccctl cells

$(BIN)/tccd $(BIN)/tccctl: FORCE
	$(GO) build -trimpath -o $@ ./cmd/$(notdir $@)

# Cells are static binaries built beside their cell.yaml, so that
# `tccctl cell pack cells/examples/NAME` works straight after `make build`.
cells:
	@for d in $(CELL_DIRS); do \
	  n=$$(basename $$d); \
	  if [ -f $$d/main.go ]; then \
	    CGO_ENABLED=0 GOFLAGS=-buildvcs=false $(GO) build -trimpath -ldflags='-s -w' -o $$d/$$n ./$$d || exit 1; \
	  fi; \
	done

test: build
	$(GO) test -count=1 ./...

# test/: launch, monitor on/off, durable audited events/s (1, 8, 64
# writers) and the other end-to-end figures;
# kernel/monitor: what the BPF programs add to each syscall, host and cell.
bench: build
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 200x ./test/...
	$(GO) test -count=1 -run '^$$' -bench BenchmarkSyscall ./kernel/monitor/

lint:
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# BPF objects (bpf2go, needs clang) and kernel/monitor's syscall name table.
generate:
	$(GO) generate ./ebpf/... ./kernel/monitor/...

demo: deps build
	./test/demo.sh

# MCP conformance suite against a real tccd (Node 22 and the suite go to
# build/conformance); see test/conformance/README.md.
conformance: build
	./test/conformance/run.sh

clean:
	rm -rf $(BIN)
	@for d in $(CELL_DIRS); do rm -f $$d/$$(basename $$d); done

FORCE:

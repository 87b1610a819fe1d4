# evpnd — see README.md. `make` builds; `make test` is the test command;
# `make demo` brings up a lab and shows the overlay working.

GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
TOOLS    := $(CURDIR)/bin/tools
STATICCHECK_VERSION := v0.8.2
LAB      ?= integration/topologies/l2-evpn.clab.yml
BENCH_ROUTES ?= 10000,100000,250000
# make test runs each fuzz target for a count of executions sized to a few
# seconds (integration/scripts/fuzz.sh); `make fuzz FUZZSCALE=100` runs 100
# times as many, `make fuzz FUZZTIME=10m` each target for ten minutes.

include api/tools.mk

.PHONY: build test test-short fuzz lint fmt demo lab-up lab-down bench proto proto-check proto-tools deps clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/evpnd ./cmd/evpnd
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/evpnctl ./cmd/evpnctl

deps:
	bash integration/scripts/deps.sh

# The test command: the generated API code is current (buf lint + generate),
# then unit, privileged (root) and lab tests. Lab tests use
# bin/evpnd, so build first.
test: build proto-check
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...
	bash integration/scripts/fuzz.sh

fuzz:
	FUZZTIME=$(FUZZTIME) FUZZSCALE=$(FUZZSCALE) bash integration/scripts/fuzz.sh

# Unit tests only (no root, no FRR needed).
test-short:
	$(GO) test -short -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@test -x $(TOOLS)/staticcheck || GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(TOOLS)/staticcheck ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Bring up the L2 lab, show peers, routes and TCP across the overlay.
demo: deps build
	bash integration/scripts/demo.sh $(LAB)

lab-up: build
	$(GO) run ./integration/cmd/lab up --keep $(LAB)

lab-down:
	$(GO) run ./integration/cmd/lab down all

# The benchmark suite against FRR (B1-B6); writes docs/benchmarks.md and
# docs/benchmarks-ingest.png.
bench: deps build
	$(GO) run ./integration/cmd/bench -routes $(BENCH_ROUTES) -report docs/benchmarks.md

# Regenerate the gRPC code from api/evpnd/v1/*.proto with the pinned tools
# (api/tools.mk), installed into bin/tools.
proto:
	@test -x $(TOOLS)/buf || GOBIN=$(TOOLS) $(MAKE) --no-print-directory proto-tools
	PATH=$(TOOLS):$$PATH buf lint api
	PATH=$(TOOLS):$$PATH buf generate api --template api/buf.gen.yaml

# Fails when the committed generated code is not what the protos give.
proto-check: proto
	@git diff --exit-code -- api/ || (echo "generated code in api/ is stale: run make proto" >&2; exit 1)
	@test -z "$$(git status --porcelain -- api/)" || (git status --porcelain -- api/; echo "untracked generated files in api/" >&2; exit 1)

clean:
	rm -rf bin

# proxyhealth — `make test` runs every test; `make demo` shows a live pool.
GO       ?= go
PROTOC   ?= protoc
BIN      := bin/proxyhealth
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PROTO_SRC := proto/proxyhealth/v1/events.proto proto/proxyhealth/v1/cluster.proto
# Packages whose tests run under the race detector: all but NORACE_PKGS,
# whose tests run protoactor's cluster and remote in-process (the library
# races inside itself: ../shared/notes/protoactor-go.md §8). The cluster's
# engine tests use an in-process fake membership and keep -race; the
# three-daemon test runs the members as processes.
NORACE_PKGS := ./membership ./examples/cluster
RACE_PKGS := $(shell $(GO) list ./... $(foreach p,$(NORACE_PKGS),| grep -v '$(patsubst ./%,/%,$(p))$$'))

.PHONY: all build test test-short bench bench-e2e proto verify demo fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/proxyhealth

test:
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)
	$(if $(NORACE_PKGS),$(GO) test -count=1 -timeout 10m $(NORACE_PKGS))
	$(GO) build -o /dev/null ./examples/...

# make soak: the long versions of the crash suites: TestKillNineRounds kills
# the real daemon with SIGKILL $(SOAK_ROUNDS) times under load (make test runs
# 20 rounds); a failing run prints PROXYHEALTH_CRASH_SEED=... to replay it.
# TestEngineProps runs $(SOAK_SEQUENCES) sequences of 60 steps (make test: 12
# of 40) with a fresh seed; a failure prints -props.seed=N to replay it.
SOAK_ROUNDS ?= 100
.PHONY: soak
SOAK_SEQUENCES ?= 200
soak:
	PROXYHEALTH_CRASH_ROUNDS=$(SOAK_ROUNDS) $(GO) test -race -count=1 -timeout 60m -v -run '^TestKillNineRounds$$' ./cmd/proxyhealth/
	PROPS_ENGINE_COUNT=$(SOAK_SEQUENCES) $(GO) test -race -count=1 -timeout 2h -v -run '^TestEngineProps$$' ./props_test/ -args -props.seed=0 -props.engine.steps=60

test-short:
	$(GO) test -short -count=1 ./...

# make bench: every benchmark (micro-benchmarks, the view, the in-process
# end-to-end runs, the spec's SC-001/005/007 runs, the daemon as shipped at
# 10,000 and 100,000 proxies with the net/http baseline), each run's output
# tee'd into $(BENCH_OUT) after a "command:" line and the uptime before it,
# then the report table of BENCHMARKS.md (go run ./internal/benchtable). A
# failing run does not stop the others; make bench fails at the end if one
# did.
BENCH_OUT ?= $(or $(TMPDIR),/tmp)/proxyhealth-bench
# $(call bench_run,NAME,COMMAND)
bench_run = { echo "command: $(2)"; echo "uptime before $(1): $$(uptime)"; } > $(BENCH_OUT)/$(1).txt; \
	{ $(2) 2>&1; echo $$? > $(BENCH_OUT)/$(1).rc; } | tee -a $(BENCH_OUT)/$(1).txt

bench:
	mkdir -p $(BENCH_OUT) && rm -f $(BENCH_OUT)/*.txt $(BENCH_OUT)/*.rc $(BENCH_OUT)/table.md
	$(call bench_run,micro,$(GO) test -run='^$$' -bench=. -benchmem -benchtime=2s -count=1 ./journal/ ./probe/ ./events/ ./projections/ ./httpapi/ ./sources/ ./internal/clock/)
	$(call bench_run,sqlview,$(GO) test -run='^$$' -bench='Rebuild|Incremental' -benchtime=1x -count=1 -timeout 20m ./projections/sqlview/)
	$(call bench_run,sqlviewaged,$(GO) test -run='^$$' -bench='^BenchmarkSteadyState$$/^proxies=10000$$/^batch=1000$$/^(fresh|history=30m)$$' -benchtime=1x -count=1 -timeout 20m ./projections/sqlview/)
	$(call bench_run,e2e,$(GO) test -run='^$$' -bench=E2E -benchtime=1x -count=1 -timeout 20m .)
	$(call bench_run,restart,$(GO) test -run='^$$' -bench='^BenchmarkRestartAged$$/^proxies=(10000|100000)$$/^history=(1h|30m)$$' -benchtime=1x -count=1 -timeout 20m .)
	$(call bench_run,report,$(GO) test -run='^$$' -bench='^Benchmark(Detection|FalsePositives|RecoveryShare)$$' -benchtime=1x -count=1 -timeout 20m .)
	$(call bench_run,daemon10k,$(GO) test -run='^$$' -bench='^BenchmarkDaemon$$/^proxies=10000$$' -benchtime=1x -count=1 -timeout 30m ./cmd/proxyhealth/)
	$(call bench_run,daemon100k,$(GO) test -run='^$$' -bench='^BenchmarkDaemon$$/^proxies=100000$$' -benchtime=1x -count=1 -timeout 30m ./cmd/proxyhealth/)
	$(GO) run ./internal/benchtable $(BENCH_OUT)/*.txt | tee $(BENCH_OUT)/table.md
	@if grep -qv '^0$$' $(BENCH_OUT)/*.rc; then echo "make bench: a run failed: $$(grep -lv '^0$$' $(BENCH_OUT)/*.rc)"; exit 1; fi

bench-e2e:
	$(GO) test -run='^$$' -bench=E2E -benchtime=1x -count=1 -timeout 20m .

proto:
	$(PROTOC) -I proto --plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
		--go_out=proto --go_opt=paths=source_relative $(PROTO_SRC)

verify:
	@echo "gofmt"; test -z "$$(gofmt -l . | tee /dev/stderr)"
	@echo "go vet"; $(GO) vet ./...
	@echo "go mod tidy"; $(GO) mod tidy -diff
	@echo "generated protobuf"; tmp=$$(mktemp -d); \
		$(PROTOC) -I proto --plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
			--go_out=$$tmp --go_opt=paths=source_relative $(PROTO_SRC) && \
		diff -r -q $$tmp/proxyhealth proto/proxyhealth --exclude='*.proto' >/dev/null || \
		{ echo "generated .pb.go is out of date: run make proto"; rm -rf $$tmp; exit 1; }; rm -rf $$tmp

demo: build
	./$(BIN) demo

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzReadResponse -fuzztime=60s ./probe/
	$(GO) test -run='^$$' -fuzz=FuzzDamagedJournal -fuzztime=60s ./journal/
	$(GO) test -run='^$$' -fuzz=FuzzSOCKSReply -fuzztime=60s ./probe/
	$(GO) test -run='^$$' -fuzz=FuzzEnvelope -fuzztime=60s ./events/
	$(GO) test -run='^$$' -fuzz=FuzzEnvelopeCodec -fuzztime=60s ./journal/
	$(GO) test -run='^$$' -fuzz=FuzzAPIRequest -fuzztime=60s ./httpapi/
	$(GO) test -run='^$$' -fuzz=FuzzRawQuery -fuzztime=60s ./httpapi/
	$(GO) test -run='^$$' -fuzz=FuzzConfigFile -fuzztime=60s ./cmd/proxyhealth/
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=60s ./sources/
	$(GO) test -run='^$$' -fuzz=FuzzParseEcho -fuzztime=60s ./probe/

clean:
	rm -rf bin

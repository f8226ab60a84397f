# Sentinel Telemetry. `make demo` runs the whole path on embedded defaults; `make test` runs every
# test. Both install what they need first (rustup target, apt packages).

CARGO      ?= cargo
FILTERS    := target/filters
WASM       := filter-wasm/target/wasm32-wasip2/release/sentinel_filter.wasm
FILTER_BUILD = cd filter-wasm && $(2) $(CARGO) build --release --target wasm32-wasip2 --quiet $(1) && cd .. && cp $(WASM) $(FILTERS)/$(3)

.PHONY: fuzz setup data servers filters test-filters build demo test bench bench-collector bench-collector-load bench-wal bench-sinks wrk clean

## setup: the wasm target and the C tools some crates build with (cmake for Pingora's zlib-ng).
setup:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	@command -v cmake >/dev/null || { apt-get update -qq && apt-get install -y -qq cmake; }

## data: enrichment data for the tests and the demo (MaxMind test databases, DB-IP lite, ASN
## ranges, uap-core), fetched once into target/data/.
data:
	@scripts/fetch-data.sh

## servers: the real servers the sink tests run against (Tansu for Kafka, SeaweedFS for S3,
## ClickHouse), installed once into target/servers/; the tests start their own instances.
servers:
	@scripts/fetch-servers.sh

## filters: the production filter component.
filters: setup
	@mkdir -p $(FILTERS)
	$(call FILTER_BUILD,,,sentinel_filter.wasm)
	@ls -l $(FILTERS)/sentinel_filter.wasm

## test-filters: builds used only by tests (another version string; filters that loop, trap,
## exhaust or leak memory on purpose). Never ship these.
test-filters: filters
	$(call FILTER_BUILD,,env SENTINEL_FILTER_VERSION=0.1.0-next,filter-next.wasm)
	$(call FILTER_BUILD,--features fault-loop,,filter-fault-loop.wasm)
	$(call FILTER_BUILD,--features fault-trap,,filter-fault-trap.wasm)
	$(call FILTER_BUILD,--features fault-memory,,filter-fault-memory.wasm)
	$(call FILTER_BUILD,--features fault-leak,,filter-fault-leak.wasm)
	$(call FILTER_BUILD,,,sentinel_filter.wasm)

## build: the native binaries (release).
build: setup filters
	$(CARGO) build --release --workspace --bins

## demo: reference proxy + filter + collector writing local files, traffic generated, summary.
demo: build data
	./target/release/sentinel-demo run

## test: unit tests (filter natively, workspace) and end-to-end tests against the real binaries.
## The binaries are built with the tests, in one feature set: built apart (`make build`), they
## would compile wasmtime and its dependencies a second time.
test: setup test-filters data servers
	cd filter-wasm && $(CARGO) test --quiet
	$(CARGO) build --release --workspace --bins --tests
	$(CARGO) test --release --workspace

## bench: criterion benchmark of the request-path cost (host call + guest + encode + queue push).
bench: filters
	$(CARGO) bench -p sentinel-host --bench request_path

## bench-collector: the collector pipeline per stage and in full, events/s per core, and the
## two user-agent parsers side by side.
bench-collector: data
	$(CARGO) bench -p sentinel-collector --bench pipeline

## bench-collector-load: the whole collector daemon (full enrichment, redaction, write-ahead log,
## NDJSON file sink) fed frames as fast as one client writes them: events/s and CPU per event;
## then the same for a collector that only forwards (no enrichment, no redaction).
bench-collector-load: build data
	$(CARGO) bench -p sentinel-e2e --bench collector_load

## bench-wal: the write-ahead log's cost, fsync per batch against per interval and off, in one run.
bench-wal:
	$(CARGO) bench -p sentinel-collector --bench wal

## bench-sinks: events/s each sink drains into its real server, and how old events are when each
## sink has them under a steady load through the proxy (a load run of a few minutes).
bench-sinks: build servers
	$(CARGO) bench -p sentinel-collector --bench sinks

## wrk: proxy throughput with telemetry off and on, in one run (installs wrk if missing).
wrk: build
	bench/wrk.sh

clean:
	$(CARGO) clean
	cd filter-wasm && $(CARGO) clean

## fuzz: cargo-fuzz targets (fuzz/) over the frame reader, the event decoder against the one-pass
## transcoder, the config loader, the tap filter, the enrichment data loaders and the redaction;
## FUZZ_SECONDS each (default 60, CI 30), seeded from the test data. Prints the inputs each ran
## and fails on a crash.
fuzz: data
	@scripts/fuzz.sh

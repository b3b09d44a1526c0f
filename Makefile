# image-scanner — build, test and run.
#   make test   runs every check CI runs (format, lints, unit/sim/fuzz-regression tests, real
#               trivy on the test images, the local cluster's smoke tests and the end-to-end
#               tests against it, kwok nodes and the real node)
#   make run    runs the operator against the local control plane (started if KUBECONFIG is unset)
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

include tests/cluster/cluster.mk
include tests/install/install.mk
include tests/bench/bench.mk
include tests/chaos/chaos.mk

.PHONY: help test fmt-check clippy core-deps-check unit-test run e2e

help:
	@echo "make run    - run the operator on the local control plane (see README.md)"
	@echo "make test   - run every check and test (what CI runs)"
	@echo "other: cluster-up cluster-down cluster-smoke image-binary bench-scale bench-scan-pod chaos"

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings

# The crate graph is the purity wall: the core and the API types build without a Kubernetes
# client, an async runtime, TLS, HTTP or randomness (clippy's bans cover what they call).
CORE_FORBIDDEN := tokio|kube-client|kube-runtime|hyper|hyper-util|rustls|ring|axum|tower|mimalloc|rand|getrandom|tracing-subscriber|reqwest
core-deps-check:
	@deps="$$($(CARGO) tree --locked -e normal --prefix none -p image-scanner-core -p image-scanner-api | sed 's/ .*//' | sort -u)"; \
	bad="$$(grep -xE '$(CORE_FORBIDDEN)' <<<"$$deps" || true)"; \
	if [[ -n "$$bad" ]]; then echo "core-deps-check: the core depends on:" $$bad; exit 1; fi; \
	echo "core-deps-check: image-scanner-core and image-scanner-api: $$(wc -l <<<"$$deps") crates, none of: $(CORE_FORBIDDEN)"

# Unit, property, integration and fuzz-regression tests; the simulator's 2,000+ seeds run in
# release mode (docs/testing.md).
unit-test:
	$(CARGO) test --workspace --locked --exclude sim
	$(CARGO) test -p sim --release --locked

# End-to-end tests: the operator binary against the local control plane, one test at a time,
# authenticated as the ServiceAccount the e2e overlay installs (proves the RBAC is sufficient).
e2e: install-e2e
	$(CARGO) test --locked --test e2e -- --ignored --test-threads=1

run:
	tests/run/run.sh

# bench-scale-small: the CI-sized scale benchmark (500 pods) on a cluster of its own, so the
# script cannot rot; its correctness checks (a result for every CIS, one Job per digest, no quiet
# writes) fail the run, its timing targets are reported only (make bench-scale STRICT=1 enforces).
# chaos-small: the CI-sized chaos run (issue 22), also on a cluster of its own; any violation
# fails it, with the seed to replay.
test: fmt-check clippy core-deps-check unit-test install-check image-binary-check cluster-smoke scanner-check e2e real-install-check bench-scale-small chaos-small
	@echo "make test: all checks passed"

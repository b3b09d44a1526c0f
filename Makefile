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

.PHONY: help test fmt-check clippy unit-test run e2e

help:
	@echo "make run    - run the operator on the local control plane (see README.md)"
	@echo "make test   - run every check and test (what CI runs)"
	@echo "other: cluster-up cluster-down cluster-smoke image-binary bench-scale"

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings

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
test: fmt-check clippy unit-test install-check image-binary-check cluster-smoke scanner-check e2e real-install-check bench-scale-small
	@echo "make test: all checks passed"

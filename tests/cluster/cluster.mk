# Local Kubernetes control plane for tests (see docs/local-control-plane.md).
# Included from the top-level Makefile.
CLUSTER_DIR := tests/cluster

.PHONY: cluster-build cluster-up cluster-down cluster-smoke cluster-status

cluster-build:
	$(CLUSTER_DIR)/build.sh

cluster-up:
	$(CLUSTER_DIR)/up.sh

cluster-down:
	$(CLUSTER_DIR)/down.sh

cluster-status:
	$(CLUSTER_DIR)/up.sh --status

cluster-smoke: cluster-up
	$(CLUSTER_DIR)/smoke.sh
	tests/realnode/smoke.sh

# Local Kubernetes control plane for tests (see docs/local-control-plane.md).
# Included from the top-level Makefile.
CLUSTER_DIR := tests/cluster

.PHONY: cluster-build cluster-up cluster-down cluster-smoke cluster-status scanner-check real-install-check bench-scan-pod

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

# Real trivy (built from its Go module) on the test images' files, run as the scan Job runs it
# but without Kubernetes: exactly the findings in tests/realnode/expected/ (after cluster-up,
# which installs umoci and skopeo where they are missing).
scanner-check:
	@if [[ "$${REAL_NODE:-1}" == 0 ]]; then echo "scanner-check: SKIPPED (REAL_NODE=0)"; \
	else tests/realnode/check-scanner.sh; fi

# The real install on the real node (operator image from the release binary, kubectl apply -k
# kustomize/overlays/real-node): a real scan by the in-cluster operator, and its pod killed
# mid-scan without a lost or duplicate result. Removes the install again at the end.
# Scan pods with trivy copied in against trivy mounted as an image volume, on the real node:
# start time and disk writes (docs/performance.md).
bench-scan-pod: cluster-up
	tests/realnode/bench-scan-pod.sh

real-install-check: cluster-up image-binary
	tests/realnode/install-check.sh

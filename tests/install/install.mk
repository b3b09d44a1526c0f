# Installation: kustomize manifests, container image, alerts and dashboard (docs/install.md).
# Included from the top-level Makefile.
INSTALL_DIR := tests/install

.PHONY: install-check install-render install-metrics install-rules install-e2e install-rbac-smoke \
        install-sync-crd image-binary image-binary-check install-release-check workflow-lint

# Static checks, no cluster: renders, pinning, contract, README examples, metric names, rules,
# the GitHub Actions workflows.
install-check: install-render install-metrics install-rules workflow-lint

# kubectl kustomize of the default, base, e2e overlay, every component and the fixtures; images
# pinned by digest; CRD copy in sync; objects/ConfigMap keys/Deployment/RBAC/pod security.
install-render:
	$(INSTALL_DIR)/check-render.sh

# Metric names in the dashboard and the alerts are exported by the operator (string literals
# in src/shell/metrics.rs, src/core/metrics_model.rs).
install-metrics:
	$(INSTALL_DIR)/check-metrics.sh

# promtool check rules + promtool test rules on the rendered PrometheusRule (installs promtool).
install-rules:
	$(INSTALL_DIR)/check-rules.sh

# The static checks, then on the local control plane: apply kustomize/overlays/e2e, CRD
# Established, RBAC proven with kubectl auth can-i; writes target/e2e/operator.kubeconfig and
# target/e2e/operator.env for the e2e suite.
install-e2e: install-check cluster-up
	$(INSTALL_DIR)/e2e.sh

# The operator (target/image binary) on the host with the installed ServiceAccount's token: a
# successful and a failed scan, Lease, Event, and no "forbidden" in its log.
install-rbac-smoke: install-e2e image-binary
	$(INSTALL_DIR)/rbac-smoke.sh

# Refresh the CRD copy the kustomize component ships (kustomize cannot load ../../../crds).
install-sync-crd:
	cp crds/*.stas.statnett.no.yaml kustomize/components/crd/

# The static binary the container image ships, at target/image/image-scanner-operator.
image-binary:
	$(INSTALL_DIR)/build-static.sh

# ... statically linked, --help exits 0, `crd` prints the committed CRD; and the Dockerfile's
# build context (.dockerignore) holds the whole workspace.
image-binary-check: image-binary
	$(INSTALL_DIR)/check-binary.sh
	$(INSTALL_DIR)/check-docker-context.sh

# actionlint (built once from its Go module) on .github/workflows, shellcheck on their run: blocks
# when installed; every action pinned by commit SHA. CI here cannot run GitHub Actions.
workflow-lint:
	$(INSTALL_DIR)/actionlint.sh

# The release gate (.github/workflows/release.yml runs it after pinning the operator digest):
# fails while the placeholder digest remains, as it does on main.
install-release-check:
	$${KUBECTL:-kubectl} kustomize kustomize | $(INSTALL_DIR)/check-images.sh --release

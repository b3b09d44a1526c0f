# Chaos on the real control plane (issue 22; docs/testing.md). Included from the top-level Makefile.
#   make chaos        2,000 pods, 50 SIGKILLs, 10 kube-apiserver restarts, 3 leader pauses, 2 etcd and
#                     3 controller-manager restarts, 3 throttling phases, 40 user actions
#   make chaos-small  the CI-sized version (part of make test)
# SEED=<n> replays a schedule. Both run on a cluster of their own (target/chaos/cluster).
.PHONY: chaos chaos-small

chaos:
	tests/chaos/chaos.sh

chaos-small:
	PODS=300 NAMESPACES=6 DIGESTS=30 KILLS=12 API_RESTARTS=2 PAUSES=1 ETCD_RESTARTS=1 KCM_RESTARTS=1 THROTTLES=1 USER_OPS=12 QUIET=20 tests/chaos/chaos.sh

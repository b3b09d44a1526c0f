# Chaos on the real control plane (issue 22; docs/testing.md). Included from the top-level Makefile.
#   make chaos        2,000 pods, 50 SIGKILLs, 10 kube-apiserver restarts, 2 kube-apiserver stops past
#                     the request timeout, 3 leader pauses, 2 etcd and 3 controller-manager restarts,
#                     3 throttling phases, 2 watch expiries, a slow, a down and a hanging log
#                     endpoint, 40 user actions; a heal after each phase
#   make chaos-small  the CI-sized version (part of make test)
# SEED=<n> replays a schedule. Both run on a cluster of their own (target/chaos/cluster).
.PHONY: chaos chaos-small

chaos:
	tests/chaos/chaos.sh

chaos-small:
	PODS=300 NAMESPACES=6 DIGESTS=30 KILLS=12 API_RESTARTS=2 API_PAUSES=1 PAUSES=1 ETCD_RESTARTS=1 KCM_RESTARTS=1 THROTTLES=1 WATCH_EXPIRIES=1 LOG_FAULTS=3 USER_OPS=12 QUIET=20 tests/chaos/chaos.sh

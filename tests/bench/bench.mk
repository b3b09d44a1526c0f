# Scale benchmark (see docs/performance.md). Included from the top-level Makefile.
#   make bench-scale         10,000 pods, 100 namespaces, 1,000 digests, 5-minute quiet period
#   make bench-scale-small   the CI-sized version (500 pods, 10 namespaces, 50 digests, 30 s quiet)
# Both run on a cluster of their own (target/bench/cluster) and leave the e2e cluster alone.
.PHONY: bench-scale bench-scale-small

bench-scale:
	tests/bench/scale.sh

bench-scale-small:
	PODS=500 NAMESPACES=10 DIGESTS=50 QUIET=30 tests/bench/scale.sh

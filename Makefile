include tests/cluster/cluster.mk

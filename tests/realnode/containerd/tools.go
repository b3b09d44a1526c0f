//go:build tools

// The real node's container runtime: containerd v2 (image volumes need 2.1 or later; the
// kubelet of Kubernetes 1.36 supports containerd 1.x only through a fallback it announces to
// remove), its runc shim and ctr, built by ../build-containerd.sh.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)

// Command coredns is CoreDNS with only the plugins the real node's cluster DNS needs, built
// from CoreDNS's Go module the way CoreDNS documents for custom builds (its own coremain with a
// chosen plugin list): the cluster.local zone from the API server (kubernetes), a cache, error
// logging, health and readiness endpoints and `bind` (it listens on the bridge's host address
// only). It forwards nothing: pods on the real node have no way out.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

// directives in CoreDNS's execution order (a subset of core/dnsserver/zdirectives.go).
var directives = []string{"bind", "ready", "health", "errors", "cache", "kubernetes"}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}

// Command pause is the sandbox ("pause") container of the real node's pods: it holds the pod's
// namespaces and does nothing else. Built here because the node reaches no public registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	// With a shared process namespace it is PID 1 of the pod and inherits its orphans: an
	// ignored SIGCHLD makes the kernel reap them.
	signal.Ignore(syscall.SIGCHLD)
	<-signals
}

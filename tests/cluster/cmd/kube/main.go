// Command kube is a multi-call binary holding kube-apiserver,
// kube-controller-manager and kube-scheduler from k8s.io/kubernetes.
//
// The component is chosen by argv[0] (symlink named after the component) or,
// failing that, by the first argument:
//
//	kube kube-apiserver --etcd-servers=...
//	kube-apiserver --etcd-servers=...      (symlink to kube)
//
// Only the chosen component's cobra command is constructed: the apiserver and
// scheduler install a signal handler while being constructed, and
// genericapiserver.SetupSignalContext panics when called twice.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata" // for CronJob time zone support, as upstream mains do

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric

	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

var components = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler": func() *cobra.Command {
		return scheduler.NewSchedulerCommand()
	},
}

func main() {
	name := filepath.Base(os.Args[0])
	newCmd, ok := components[name]
	if !ok && len(os.Args) > 1 {
		if newCmd, ok = components[os.Args[1]]; ok {
			// Drop the component name so cobra sees only the component's flags.
			os.Args = append([]string{os.Args[1]}, os.Args[2:]...)
		}
	}
	if !ok {
		fmt.Fprintf(os.Stderr, "usage: %s {kube-apiserver|kube-controller-manager|kube-scheduler} [flags]\n", name)
		os.Exit(2)
	}
	os.Exit(cli.Run(newCmd()))
}

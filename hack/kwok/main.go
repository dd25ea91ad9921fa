// Command kwok is the KWOK controller (sigs.k8s.io/kwok): it plays the kubelet for
// fake nodes, so that Leitstand's tests and demo run DGX B200 clusters of any size
// on one machine. Its stages move bound pods to Running and, after a simulated
// duration, to Succeeded.
package main

import (
	"os"

	"github.com/spf13/pflag"

	"sigs.k8s.io/kwok/pkg/config"
	"sigs.k8s.io/kwok/pkg/kwok/cmd"
	"sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/kwok/pkg/utils/signals"
)

func main() {
	// Global flags (logging, --config) are parsed before the command is built,
	// because building it already reads the configuration they point at.
	global := pflag.NewFlagSet("global", pflag.ContinueOnError)
	global.ParseErrorsAllowlist.UnknownFlags = true
	global.Usage = func() {}

	ctx, logger := log.InitFlags(signals.SetupSignalContext(), global)
	ctx, err := config.InitFlags(ctx, global)
	if err != nil {
		logger.Error("reading kwok configuration", "err", err)
		os.Exit(2)
	}
	root := cmd.NewCommand(ctx)
	root.PersistentFlags().AddFlagSet(global)
	if err := root.ExecuteContext(ctx); err != nil {
		logger.Error("kwok exited", "err", err)
		os.Exit(1)
	}
}

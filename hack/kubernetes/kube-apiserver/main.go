// Command kube-apiserver is the upstream Kubernetes API server, built from the
// Go module proxy for Leitstand's local control plane (tests and `make demo`).
// hack/build.sh stamps the version with -ldflags so --version tells the truth.
package main

import (
	"os"
	_ "time/tzdata" // CronJob time zones need the embedded database on minimal hosts

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics on /metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // kubernetes_build_info
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}

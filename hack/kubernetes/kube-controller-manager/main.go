// Command kube-controller-manager is the upstream controller manager, built from
// the same Kubernetes release as kube-apiserver. The dev cluster runs it (with
// `--controllers kube`) for the Job, ReplicaSet, Deployment, garbage-collector
// and namespace controllers, so the pods Leitstand gangs are made by the real
// controllers that make them in production.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics on /metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // kubernetes_build_info
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}

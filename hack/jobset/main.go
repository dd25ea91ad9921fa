// Command jobset runs the JobSet v0.12.0 controllers and admission webhooks (its
// JobSet and pod reconcilers and its webhooks, from its module) against the dev
// cluster. Upstream's command serves the webhooks behind an in-cluster Service
// with certificates it rotates into a Secret a kubelet mounts; a dev cluster has
// neither, so this command serves them on a loopback port with a certificate the
// dev cluster's CA issued, and the dev cluster registers them by URL.
package main

import (
	"flag"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	jobset "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	"sigs.k8s.io/jobset/pkg/controllers"
	"sigs.k8s.io/jobset/pkg/webhooks"
)

func main() {
	var probeAddr, webhookHost, certDir, certName, keyName string
	var webhookPort int
	flag.StringVar(&probeAddr, "health-probe-bind-address", "0", "Address of the health probes; 0 turns them off.")
	flag.StringVar(&webhookHost, "webhook-host", "127.0.0.1", "Address the admission webhooks listen on.")
	flag.IntVar(&webhookPort, "webhook-port", 9443, "Port the admission webhooks listen on.")
	flag.StringVar(&certDir, "webhook-cert-dir", "", "Directory of the webhooks' serving certificate.")
	flag.StringVar(&certName, "webhook-cert-name", "tls.crt", "File name of the serving certificate.")
	flag.StringVar(&keyName, "webhook-key-name", "tls.key", "File name of the serving key.")
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(jobset.AddToScheme(scheme))

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: probeAddr,
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: webhookHost, Port: webhookPort, CertDir: certDir, CertName: certName, KeyName: keyName,
		}),
	})
	if err != nil {
		log.Error(err, "unable to create the manager")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		log.Error(err, "unable to add the health check")
		os.Exit(1)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := controllers.SetupJobSetIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		log.Error(err, "unable to index the JobSets' Jobs")
		os.Exit(1)
	}
	if err := controllers.SetupPodIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		log.Error(err, "unable to index the JobSets' pods")
		os.Exit(1)
	}
	jobSets := controllers.NewJobSetReconciler(mgr.GetClient(), mgr.GetScheme(), mgr.GetEventRecorder("jobset"))
	if err := jobSets.SetupWithManager(mgr); err != nil {
		log.Error(err, "unable to set up the JobSet controller")
		os.Exit(1)
	}
	pods := controllers.NewPodReconciler(mgr.GetClient(), mgr.GetScheme(), mgr.GetEventRecorder("pod"))
	if err := pods.SetupWithManager(mgr); err != nil {
		log.Error(err, "unable to set up the JobSet pod controller")
		os.Exit(1)
	}
	if err := webhooks.Setup(mgr); err != nil {
		log.Error(err, "unable to set up the JobSet webhooks")
		os.Exit(1)
	}
	log.Info("starting the JobSet controllers and webhooks")
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "the manager stopped")
		os.Exit(1)
	}
}

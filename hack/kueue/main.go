// Command kueue runs Kueue v0.17.0's manager (its cache, queue manager, core and
// topology-aware controllers, the batch/v1 Job integration, its admission
// webhooks and its scheduler, all from its module) against the dev cluster, for
// the side-by-side benchmark. Upstream's command reads its metrics certificate
// from a fixed path under /etc and its webhook certificates from a Secret a
// kubelet mounts; a dev cluster has neither, so this command serves the webhooks
// on a loopback port with a certificate the dev cluster's CA issued (the
// Configuration file's webhook host, port and certDir), turns the metrics server
// off, and wires only the integration the benchmark submits (batch/v1 Job).
package main

import (
	"flag"
	"os"

	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	configapiv1beta1 "sigs.k8s.io/kueue/apis/config/v1beta1"
	configapi "sigs.k8s.io/kueue/apis/config/v1beta2"
	kueuealpha "sigs.k8s.io/kueue/apis/kueue/v1alpha1"
	kueuev1beta1 "sigs.k8s.io/kueue/apis/kueue/v1beta1"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	qcache "sigs.k8s.io/kueue/pkg/cache/queue"
	schdcache "sigs.k8s.io/kueue/pkg/cache/scheduler"
	"sigs.k8s.io/kueue/pkg/config"
	"sigs.k8s.io/kueue/pkg/constants"
	"sigs.k8s.io/kueue/pkg/controller/core"
	"sigs.k8s.io/kueue/pkg/controller/core/indexer"
	"sigs.k8s.io/kueue/pkg/controller/jobframework"
	"sigs.k8s.io/kueue/pkg/controller/tas"
	tasindexer "sigs.k8s.io/kueue/pkg/controller/tas/indexer"
	"sigs.k8s.io/kueue/pkg/features"
	"sigs.k8s.io/kueue/pkg/metrics"
	"sigs.k8s.io/kueue/pkg/scheduler"
	preemptexpectations "sigs.k8s.io/kueue/pkg/scheduler/preemption/expectations"
	"sigs.k8s.io/kueue/pkg/scheduler/preemption/fairsharing"
	"sigs.k8s.io/kueue/pkg/util/kubeversion"
	"sigs.k8s.io/kueue/pkg/webhooks"

	_ "sigs.k8s.io/kueue/pkg/controller/jobs/job"
)

func main() {
	var configFile string
	flag.StringVar(&configFile, "config", "", "Kueue's Configuration file (config.kueue.x-k8s.io/v1beta2).")
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")
	fail := func(err error, what string) {
		log.Error(err, what)
		os.Exit(1)
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(schedulingv1.AddToScheme(scheme))
	utilruntime.Must(kueue.AddToScheme(scheme))
	utilruntime.Must(kueuev1beta1.AddToScheme(scheme))
	utilruntime.Must(kueuealpha.AddToScheme(scheme))
	utilruntime.Must(configapiv1beta1.AddToScheme(scheme))
	utilruntime.Must(configapi.AddToScheme(scheme))
	utilruntime.Must(jobframework.ForEachIntegration(func(_ string, cb jobframework.IntegrationCallbacks) error {
		if cb.AddToScheme != nil {
			return cb.AddToScheme(scheme)
		}
		return nil
	}))

	options, cfg, err := config.Load(scheme, configFile)
	if err != nil {
		fail(err, "unable to load the configuration")
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(cfg.FeatureGates); err != nil {
		fail(err, "unable to set the feature gates")
	}
	config.AddWebhookSettingsTo(&options, &cfg)
	options.Metrics = metricsserver.Options{BindAddress: "0"}
	metrics.Register()

	kubeConfig := ctrl.GetConfigOrDie()
	ctx := ctrl.SetupSignalHandler()
	mgr, err := ctrl.NewManager(kubeConfig, options)
	if err != nil {
		fail(err, "unable to create the manager")
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		fail(err, "unable to add the health check")
	}
	if err := mgr.AddReadyzCheck("readyz", mgr.GetWebhookServer().StartedChecker()); err != nil {
		fail(err, "unable to add the ready check")
	}

	expectations := preemptexpectations.New()
	cacheOptions := []schdcache.Option{schdcache.WithFairSharing(fairsharing.Enabled(cfg.FairSharing))}
	queueOptions := []qcache.Option{qcache.WithPreemptionExpectations(expectations)}
	if cfg.Resources != nil && len(cfg.Resources.ExcludeResourcePrefixes) > 0 {
		cacheOptions = append(cacheOptions, schdcache.WithExcludedResourcePrefixes(cfg.Resources.ExcludeResourcePrefixes))
		queueOptions = append(queueOptions, qcache.WithExcludedResourcePrefixes(cfg.Resources.ExcludeResourcePrefixes))
	}
	cache := schdcache.New(mgr.GetClient(), cacheOptions...)
	requeuer := qcache.NewRequeuer()
	if err := mgr.Add(requeuer); err != nil {
		fail(err, "unable to add the requeuer")
	}
	queues := qcache.NewManager(mgr.GetClient(), cache, requeuer, queueOptions...)

	frameworks := jobframework.WithEnabledFrameworks(cfg.Integrations.Frameworks)
	if err := indexer.Setup(ctx, mgr.GetFieldIndexer()); err != nil {
		fail(err, "unable to index the core objects")
	}
	if features.Enabled(features.TopologyAwareScheduling) {
		if err := tasindexer.SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
			fail(err, "unable to index for topology-aware scheduling")
		}
	}
	if err := jobframework.SetupIndexes(ctx, mgr.GetFieldIndexer(), frameworks); err != nil {
		fail(err, "unable to index the integrations")
	}

	discoveryClient, err := discovery.NewDiscoveryClientForConfig(kubeConfig)
	if err != nil {
		fail(err, "unable to create the discovery client")
	}
	serverVersion := kubeversion.NewServerVersionFetcher(discoveryClient)
	if err := mgr.Add(serverVersion); err != nil {
		fail(err, "unable to add the server version fetcher")
	}
	if err := serverVersion.FetchServerVersion(); err != nil {
		fail(err, "unable to fetch the server version")
	}

	if name, err := core.SetupControllers(mgr, queues, cache, &cfg, nil, expectations, nil); err != nil {
		fail(err, "unable to set up the core controller "+name)
	}
	if features.Enabled(features.TopologyAwareScheduling) {
		if name, err := tas.SetupControllers(mgr, queues, cache, &cfg, nil); err != nil {
			fail(err, "unable to set up the topology controller "+name)
		}
	}
	namespaces, err := metav1.LabelSelectorAsSelector(cfg.ManagedJobsNamespaceSelector)
	if err != nil {
		fail(err, "unable to parse managedJobsNamespaceSelector")
	}
	if namespaces == nil {
		namespaces = labels.Everything()
	}
	if err := jobframework.SetupControllers(ctx, mgr, log,
		jobframework.WithManageJobsWithoutQueueName(cfg.ManageJobsWithoutQueueName),
		jobframework.WithManagedJobsNamespaceSelector(namespaces),
		jobframework.WithWaitForPodsReady(cfg.WaitForPodsReady),
		jobframework.WithKubeServerVersion(serverVersion),
		frameworks,
		jobframework.WithManagerName(constants.KueueName),
		jobframework.WithLabelKeysToCopy(cfg.Integrations.LabelKeysToCopy),
		jobframework.WithCache(cache),
		jobframework.WithQueues(queues),
		jobframework.WithObjectRetentionPolicies(cfg.ObjectRetentionPolicies),
	); err != nil {
		fail(err, "unable to set up the integrations")
	}
	if name, err := webhooks.Setup(mgr, nil); err != nil {
		fail(err, "unable to set up the webhook for "+name)
	}

	go queues.CleanUpOnContext(ctx)
	go cache.CleanUpOnContext(ctx)
	sched := scheduler.New(queues, cache, mgr.GetClient(), mgr.GetEventRecorderFor(constants.AdmissionName),
		scheduler.WithFairSharing(cfg.FairSharing),
		scheduler.WithAdmissionFairSharing(cfg.AdmissionFairSharing),
		scheduler.WithPreemptionExpectations(expectations),
	)
	if err := mgr.Add(sched); err != nil {
		fail(err, "unable to add the scheduler")
	}
	log.Info("starting the manager")
	if err := mgr.Start(ctx); err != nil {
		fail(err, "the manager stopped")
	}
}

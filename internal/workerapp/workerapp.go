// Package workerapp assembles the bacalhau-connect worker: it registers every
// workflow and activity on a Temporal worker. worker/main.go, the local stack
// and the tests all build their workers here, so none of them can forget a
// registration.
package workerapp

import (
	clientv2 "github.com/bacalhau-project/bacalhau/pkg/publicapi/client/v2"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
	"github.com/bacalhau-connect/bacalhau-connect/internal/kinds"
	"github.com/bacalhau-connect/bacalhau-connect/source"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// Options configures a worker.
type Options struct {
	// TaskQueue to poll. Default workflows.TaskQueue.
	TaskQueue string
	// BacalhauAddress is the Bacalhau API base URL, e.g. http://127.0.0.1:1234.
	BacalhauAddress string
	// BacalhauOptions configure its client (TLS, API key: conn.Bacalhau).
	BacalhauOptions []clientv2.OptionFn
	// Gateway mints capability URLs for tasks that read S3 objects (an
	// *inputgateway.Gateway); leave it nil when this worker serves none.
	Gateway activities.URLMinter
	// S3Clients makes the S3 clients of scans and dead letters (nil: the
	// standard AWS chain).
	S3Clients inputgateway.ClientFactory
	// QueueClients makes the SQS and SNS clients of queue connectors (nil:
	// the standard AWS chain).
	QueueClients activities.QueueClients
	// KinesisClients makes the Kinesis clients of Kinesis connectors (nil:
	// the standard AWS chain).
	KinesisClients activities.KinesisClientFactory
	// MaxConcurrentActivities caps activities running at once in this worker
	// (0: the SDK default). Awaits are cheap pollers; the shared Budget, not
	// this number, caps Bacalhau jobs in flight.
	MaxConcurrentActivities int
	// Kinds are the connector kinds the worker serves (zero: the built-in
	// ones, kinds.All; kinds.With adds source stream kinds of other
	// modules).
	Kinds kinds.Registry
}

// New returns a worker (not yet started) with everything registered.
func New(c client.Client, opts Options) worker.Worker {
	if opts.TaskQueue == "" {
		opts.TaskQueue = workflows.TaskQueue
	}
	w := worker.New(c, opts.TaskQueue, worker.Options{
		MaxConcurrentActivityExecutionSize: opts.MaxConcurrentActivities,
		Interceptors:                       []interceptor.WorkerInterceptor{&quietHeartbeats{}},
	})
	b := activities.NewBacalhau(opts.BacalhauAddress, opts.Gateway, opts.BacalhauOptions...)
	kafka := activities.NewKafkaClients()
	reg := opts.Kinds
	if len(reg.Kinds()) == 0 {
		reg = kinds.All()
	}
	Register(w, activities.NewTemporal(c), kinds.Deps{Bacalhau: b, S3Clients: opts.S3Clients, Kafka: kafka,
		QueueClients: opts.QueueClients, KinesisClients: opts.KinesisClients}, reg)
	return &appWorker{Worker: w, kafka: kafka}
}

// appWorker closes the worker's shared Kafka clients when it stops.
type appWorker struct {
	worker.Worker
	kafka *activities.KafkaClients
}

// Stop stops the worker, then closes its Kafka clients.
func (w *appWorker) Stop() {
	w.Worker.Stop()
	w.kafka.Close()
}

// Register registers the shared workflows and activities (RunTask, Budget,
// the Bacalhau, Temporal and S3 activities) and then every kind's of reg.
// Activity names are their method names, so methods of different activity
// structs must not share a name.
func Register(r worker.Registry, t *activities.Temporal, d kinds.Deps, reg kinds.Registry) {
	r.RegisterWorkflowWithOptions(workflows.RunTask, workflow.RegisterOptions{Name: workflows.RunTaskWorkflowType})
	r.RegisterWorkflowWithOptions(workflows.Budget, workflow.RegisterOptions{Name: workflows.BudgetWorkflowType})
	r.RegisterActivity(d.Bacalhau)
	r.RegisterActivity(t)
	r.RegisterActivity(activities.NewS3(d.S3Clients, d.Bacalhau))
	streams := map[string]source.StreamOpener{}
	queues := map[string]source.QueueOpener{}
	for _, k := range reg.Kinds() {
		k.Register(r, d)
		if k.Stream != nil {
			streams[k.Name] = k.Stream
		}
		if k.Queue != nil {
			queues[k.Name] = k.Queue
		}
	}
	// One set of activities serves every source stream kind, one every
	// source queue kind.
	r.RegisterActivity(activities.NewSourceStreams(d.Bacalhau, d.S3Clients, streams))
	r.RegisterActivity(activities.NewSourceQueues(d.Bacalhau, queues))
}

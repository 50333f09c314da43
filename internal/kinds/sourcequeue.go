package kinds

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/source"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// sourceQueueKind is a kind on the public source.Queue interface (Google
// Cloud Pub/Sub, kinds from other modules): the shared queue connector
// workflow under the kind's own type name, its queue opened by its opener,
// its status rendered as the SQS connector's.
func sourceQueueKind(k source.QueueKind) *Kind {
	sk := spec.QueueKindOf(k)
	return &Kind{
		Name: sk.Kind, SpecKinds: []string{sk.Kind}, WorkflowType: sk.ConnectorType, IDPrefix: sk.IDPrefix, Queue: k.Open,
		Section: func(r *spec.Resolved) (Start, bool) {
			cfg := r.SourceQueue
			if cfg == nil || cfg.SourceKind != sk {
				return Start{}, false
			}
			id := sk.WorkflowID(cfg.Name)
			return Start{Name: cfg.Name, Kind: sk.Kind, WorkflowID: id, WorkflowType: sk.ConnectorType,
				Source: sk.Kind + ":" + cfg.Describe, Input: workflows.SourceQueueInput{Config: *cfg}, Config: *cfg,
				Started: fmt.Sprintf("connector %s started (workflow %s; %d poller(s) on %s)\n", cfg.Name, id, cfg.Concurrency, cfg.Describe)}, true
		},
		Status: func(ctx context.Context, c client.Client, name string) (Status, error) {
			st, err := queryStatus[workflows.QueueStatus](ctx, c, name, sk.WorkflowID(name), workflows.QueryQueueStatus)
			return rendered(st, err, queueRow, func(st *workflows.QueueStatus) string { return describeQueue(st, sk.WorkflowID(st.Name), "acked") })
		},
		Register: func(r worker.Registry, _ Deps) {
			r.RegisterWorkflowWithOptions(workflows.SourceQueueConnector, workflow.RegisterOptions{Name: sk.ConnectorType})
		},
		Reset: Reset{Style: ResetNone, Why: "a queue has no position to move (each message is acked once processed)"},
	}
}

package kinds

import (
	"context"
	"fmt"
	"strings"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// queueKind is the queue connector: an SQS queue, or an SNS topic through
// an SQS queue.
func queueKind() *Kind {
	return &Kind{
		Name: workflows.KindQueue, SpecKinds: []string{workflows.KindSQS, workflows.KindSNS},
		WorkflowType: workflows.QueueWorkflowType, IDPrefix: workflows.QueueWorkflowIDPrefix,
		Section: func(r *spec.Resolved) (Start, bool) {
			cfg := r.Queue
			if cfg == nil {
				return Start{}, false
			}
			id := workflows.QueueWorkflowID(cfg.Name)
			source := "sqs:" + cfg.Queue
			if cfg.SNS != nil {
				source = cfg.SNS.TopicARN
			}
			return Start{Name: cfg.Name, Kind: cfg.Kind, WorkflowID: id, WorkflowType: workflows.QueueWorkflowType, Source: source,
				Input: workflows.QueueInput{Config: *cfg}, Config: *cfg,
				Started: fmt.Sprintf("connector %s started (workflow %s; %d poller(s) on %s)\n", cfg.Name, id, cfg.Concurrency, cfg.Queue)}, true
		},
		Status: func(ctx context.Context, c client.Client, name string) (Status, error) {
			st, err := queryStatus[workflows.QueueStatus](ctx, c, name, workflows.QueueWorkflowID(name), workflows.QueryQueueStatus)
			return rendered(st, err, queueRow, func(st *workflows.QueueStatus) string {
				return describeQueue(st, workflows.QueueWorkflowID(st.Name), "deleted")
			})
		},
		Register: func(r worker.Registry, d Deps) {
			r.RegisterWorkflowWithOptions(workflows.QueueConnector, workflow.RegisterOptions{Name: workflows.QueueWorkflowType})
			r.RegisterActivity(activities.NewQueue(d.Bacalhau, d.QueueClients))
		},
		ApplyNote: func(ctx context.Context, s Start) string {
			cfg, ok := s.Config.(workflows.QueueConfig)
			if !ok {
				return ""
			}
			return redriveNote(ctx, cfg)
		},
		Reset: Reset{Style: ResetNone, Why: "a queue has no position to move (each message is deleted once processed)"},
	}
}

// redriveNote warns when the queue's redrive policy sends messages to its
// DLQ after fewer receives than a healthy message may need when workers
// crash mid-task (activities.SafeMaxReceiveCount), naming the value to
// set. It reads the queue with the standard AWS chain; a queue it cannot
// read (not there yet, no credentials here) gets no note: the connector
// itself reports a missing queue.
func redriveNote(ctx context.Context, cfg workflows.QueueConfig) string {
	n, ok, err := activities.MaxReceiveCount(ctx, nil, activities.QueueRef{Queue: cfg.Queue, Region: cfg.Region, Endpoint: cfg.Endpoint})
	if err != nil || !ok || n >= activities.SafeMaxReceiveCount {
		return ""
	}
	return fmt.Sprintf("warning: queue %s moves a message to its DLQ after %d receives (redrive maxReceiveCount); every receive counts, and a worker that "+
		"crashes while a message's task runs costs it 2 or more (more for tasks longer than twice the visibility timeout), so a healthy message could reach the DLQ. Set maxReceiveCount to %d or more:\n"+
		"  aws sqs set-queue-attributes --queue-url <url> --attributes '{\"RedrivePolicy\":\"{\\\"deadLetterTargetArn\\\":\\\"<dlq arn>\\\",\\\"maxReceiveCount\\\":\\\"%d\\\"}\"}'\n",
		cfg.Queue, n, activities.SafeMaxReceiveCount, activities.SafeMaxReceiveCount)
}

func queueState(st *workflows.QueueStatus) string {
	switch {
	case st.Paused:
		return "paused"
	case st.InFlight > 0:
		return "running"
	default:
		return "polling"
	}
}

func queueRow(st *workflows.QueueStatus) Row {
	return Row{Name: st.Name, Kind: st.Kind, State: queueState(st), Position: st.URL,
		Processed: st.Counters.Deleted, LastJob: st.LastJob, LastError: st.LastError}
}

// describeQueue renders the status of a queue connector (workflow id);
// settled names what the queue does to a processed message (deleted,
// acked).
func describeQueue(st *workflows.QueueStatus, id, settled string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "connector   %s (workflow %s), kind %s\nstate       %s, %d batch(es) in flight\nqueue       %s\n",
		st.Name, id, st.Kind, queueState(st), st.InFlight, st.URL)
	if s := st.SNS; s != nil {
		fmt.Fprintf(&b, "sns         subscription %s (queue %s by this connector)\n", s.SubscriptionARN, map[bool]string{true: "created", false: "adopted"}[s.Created])
	}
	k := st.Counters
	fmt.Fprintf(&b, "counters    %d batches, %d messages, %d %s, %d released (failed or reported), %d duplicates %s, %d failed batches\n",
		k.Batches, k.Messages, k.Deleted, settled, k.Released, k.Duplicates, settled, k.FailedBatches)
	if st.LastJob != "" {
		fmt.Fprintf(&b, "last job    %s\n", st.LastJob)
	}
	if st.LastError != "" {
		fmt.Fprintf(&b, "last error  %s\n", st.LastError)
	}
	return b.String()
}

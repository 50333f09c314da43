package kinds

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// kafkaKind is the Kafka connector: one durable consumer per partition.
func kafkaKind() *Kind {
	return &Kind{
		Name: workflows.KindKafka, SpecKinds: []string{workflows.KindKafka},
		WorkflowType: workflows.KafkaConnectorWorkflowType, IDPrefix: workflows.KafkaWorkflowIDPrefix,
		Section: func(r *spec.Resolved) (Start, bool) {
			cfg := r.Kafka
			if cfg == nil {
				return Start{}, false
			}
			id := workflows.KafkaWorkflowID(cfg.Name)
			return Start{Name: cfg.Name, Kind: workflows.KindKafka, WorkflowID: id, WorkflowType: workflows.KafkaConnectorWorkflowType,
				Source: "kafka:" + cfg.Topic, Input: workflows.KafkaConnectorInput{Config: *cfg}, Config: *cfg,
				Started: fmt.Sprintf("connector %s started (workflow %s; one consumer per partition of %s)\n", cfg.Name, id, cfg.Topic)}, true
		},
		Status: func(ctx context.Context, c client.Client, name string) (Status, error) {
			st, err := KafkaStatus(ctx, c, name)
			return rendered(st, err, kafkaRow, describeKafka)
		},
		Register: func(r worker.Registry, d Deps) {
			r.RegisterWorkflowWithOptions(workflows.KafkaConnector, workflow.RegisterOptions{Name: workflows.KafkaConnectorWorkflowType})
			r.RegisterWorkflowWithOptions(workflows.PartitionConsumer, workflow.RegisterOptions{Name: workflows.PartitionConsumerWorkflowType})
			r.RegisterWorkflowWithOptions(workflows.KafkaStreamConsumer, workflow.RegisterOptions{Name: workflows.KafkaStreamConsumerWorkflowType})
			r.RegisterActivity(activities.NewKafka(d.Kafka, d.Bacalhau, d.S3Clients))
		},
		Reset: Reset{Style: ResetConsumers, Unit: "partitions",
			Progress: func(ctx context.Context, c client.Client, name, id string) (applied, waiting []string, err error) {
				st, err := KafkaStatus(ctx, c, name)
				if err != nil {
					return nil, nil, err
				}
				for _, p := range st.Partitions {
					if p.LastReset == id {
						applied = append(applied, fmt.Sprintf("%d=%d", p.Partition, p.Checkpoint))
					} else {
						waiting = append(waiting, resetWaiting(fmt.Sprintf("partition %d", p.Partition), p.LastError))
					}
				}
				return applied, waiting, nil
			}},
	}
}

// KafkaStatus queries a Kafka connector's aggregated status.
func KafkaStatus(ctx context.Context, c client.Client, name string) (*workflows.KafkaConnectorStatus, error) {
	return queryStatus[workflows.KafkaConnectorStatus](ctx, c, name, workflows.KafkaWorkflowID(name), workflows.QueryPartitionStatus)
}

func kafkaState(st *workflows.KafkaConnectorStatus) string {
	if st.Paused {
		return "paused"
	}
	for _, p := range st.Partitions {
		if p.Phase == "blocked" {
			return "blocked"
		}
	}
	return "running"
}

func kafkaRow(st *workflows.KafkaConnectorStatus) Row {
	row := Row{Name: st.Name, Kind: workflows.KindKafka, State: kafkaState(st), Processed: st.Records, Lag: st.Lag,
		Position: fmt.Sprintf("%s: %d partitions", st.Topic, len(st.Started))}
	var last time.Time
	row.LastError = st.LastError
	for _, p := range st.Partitions {
		if p.LastError != "" {
			row.LastError = fmt.Sprintf("partition %d: %s", p.Partition, p.LastError)
		}
		if p.LastJob != "" && !p.Reported.Before(last) {
			row.LastJob, last = p.LastJob, p.Reported
		}
	}
	return row
}

// describeKafka renders a Kafka connector's status with one row per partition.
func describeKafka(st *workflows.KafkaConnectorStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "connector   %s (workflow %s), kind kafka, mode %s\nstate       %s\ntopic       %s, group %s\n",
		st.Name, workflows.KafkaWorkflowID(st.Name), st.Mode, kafkaState(st), st.Topic, st.Group)
	fmt.Fprintf(&b, "totals      %d records in %d batches, %d dead-lettered, lag %d\n", st.Records, st.Batches, st.DeadLettered, st.Lag)
	if st.LastError != "" {
		fmt.Fprintf(&b, "last error  %s\n", st.LastError)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tPHASE\tCHECKPOINT\tEND\tLAG\tRECORDS\tDEAD\tLAST JOB\tLAST ERROR")
	for _, p := range st.Partitions {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", p.Partition, p.Phase, p.Checkpoint, p.End, p.Lag,
			p.Records, p.DeadLettered, Dash(p.LastJob), Dash(p.LastError))
	}
	_ = tw.Flush()
	return b.String()
}

// resetWaiting names a consumer that has not applied a reset yet, with its
// last error.
func resetWaiting(consumer, lastError string) string {
	if lastError == "" {
		return consumer
	}
	return consumer + " (" + lastError + ")"
}

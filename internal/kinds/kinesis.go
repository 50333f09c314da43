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

// kinesisKind is the Kinesis connector: one durable consumer per shard,
// following splits and merges.
func kinesisKind() *Kind {
	return &Kind{
		Name: workflows.KindKinesis, SpecKinds: []string{workflows.KindKinesis},
		WorkflowType: workflows.KinesisConnectorWorkflowType, IDPrefix: workflows.KinesisWorkflowIDPrefix,
		Section: func(r *spec.Resolved) (Start, bool) {
			cfg := r.Kinesis
			if cfg == nil {
				return Start{}, false
			}
			id := workflows.KinesisWorkflowID(cfg.Name)
			return Start{Name: cfg.Name, Kind: workflows.KindKinesis, WorkflowID: id, WorkflowType: workflows.KinesisConnectorWorkflowType,
				Source: "kinesis:" + cfg.Stream, Input: workflows.KinesisConnectorInput{Config: *cfg}, Config: *cfg,
				Started: fmt.Sprintf("connector %s started (workflow %s; one consumer per shard of %s, following splits and merges)\n", cfg.Name, id, cfg.Stream)}, true
		},
		Status: func(ctx context.Context, c client.Client, name string) (Status, error) {
			st, err := KinesisStatus(ctx, c, name)
			return rendered(st, err, kinesisRow, describeKinesis)
		},
		Register: func(r worker.Registry, d Deps) {
			r.RegisterWorkflowWithOptions(workflows.KinesisConnector, workflow.RegisterOptions{Name: workflows.KinesisConnectorWorkflowType})
			r.RegisterWorkflowWithOptions(workflows.ShardConsumer, workflow.RegisterOptions{Name: workflows.ShardConsumerWorkflowType})
			r.RegisterWorkflowWithOptions(workflows.KinesisStreamConsumer, workflow.RegisterOptions{Name: workflows.KinesisStreamConsumerWorkflowType})
			r.RegisterActivity(activities.NewKinesis(d.Bacalhau, d.KinesisClients, d.S3Clients))
		},
		Reset: Reset{Style: ResetConsumers, Unit: "shards",
			Progress: func(ctx context.Context, c client.Client, name, id string) (applied, waiting []string, err error) {
				st, err := KinesisStatus(ctx, c, name)
				if err != nil {
					return nil, nil, err
				}
				for _, s := range st.Shards {
					switch {
					case s.Finished || s.Phase == workflows.PhaseWaitingForParents: // not told
					case s.LastReset == id:
						applied = append(applied, s.Shard) // reads from the position on resume
					default:
						waiting = append(waiting, resetWaiting("shard "+s.Shard, s.LastError))
					}
				}
				return applied, waiting, nil
			}},
	}
}

// KinesisStatus queries a Kinesis connector's aggregated status.
func KinesisStatus(ctx context.Context, c client.Client, name string) (*workflows.KinesisConnectorStatus, error) {
	return queryStatus[workflows.KinesisConnectorStatus](ctx, c, name, workflows.KinesisWorkflowID(name), workflows.QueryShardStatus)
}

func kinesisState(st *workflows.KinesisConnectorStatus) string {
	if st.Paused {
		return "paused"
	}
	for _, s := range st.Shards {
		if s.Phase == "blocked" {
			return "blocked"
		}
	}
	return "running"
}

func kinesisRow(st *workflows.KinesisConnectorStatus) Row {
	open := 0
	for _, s := range st.Shards {
		if !s.Finished {
			open++
		}
	}
	most := st.Behind(time.Now())
	row := Row{Name: st.Name, Kind: workflows.KindKinesis, State: kinesisState(st), Processed: st.Records,
		Position:     fmt.Sprintf("%s: %d shards (%d finished), behind %s", st.Stream, len(st.Shards), len(st.Shards)-open, behind(most)),
		BehindMillis: most.Milliseconds(), LastError: st.LastError}
	var last time.Time
	for _, s := range st.Shards {
		if s.LastError != "" {
			row.LastError = fmt.Sprintf("shard %s: %s", s.Shard, s.LastError)
		}
		if s.LastJob != "" && !s.Reported.Before(last) {
			row.LastJob, last = s.LastJob, s.Reported
		}
	}
	return row
}

// describeKinesis renders a Kinesis connector's status with one row per
// shard, parents included.
func describeKinesis(st *workflows.KinesisConnectorStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "connector   %s (workflow %s), kind kinesis, mode %s\nstate       %s\nstream      %s\n",
		st.Name, workflows.KinesisWorkflowID(st.Name), st.Mode, kinesisState(st), st.Stream)
	now := time.Now()
	fmt.Fprintf(&b, "totals      %d records in %d batches, %d dead-lettered, behind %s\n", st.Records, st.Batches, st.DeadLettered, behind(st.Behind(now)))
	if st.LastError != "" {
		fmt.Fprintf(&b, "last error  %s\n", st.LastError)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tPARENTS\tPHASE\tCHECKPOINT\tBEHIND\tRECORDS\tDEAD\tLAST JOB\tLAST ERROR")
	for _, s := range st.Shards {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", s.Shard, Dash(strings.Join(s.Parents, ",")), s.Phase, Dash(s.Checkpoint),
			behind(s.Behind(now)), s.Records, s.DeadLettered, Dash(s.LastJob), Dash(s.LastError))
	}
	_ = tw.Flush()
	return b.String()
}

// behind writes how far a shard is behind, to the second.
func behind(d time.Duration) string { return d.Round(time.Second).String() }

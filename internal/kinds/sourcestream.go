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

	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/source"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// sourceStreamKind is a kind on the public source.Stream interface (NATS
// JetStream, kinds from other modules): the shared connector and consumer
// workflows under the kind's own type names, its source opened by its
// opener, its units named as it names them.
func sourceStreamKind(k source.StreamKind) *Kind {
	sk, open, unitNoun := spec.SourceKindOf(k), k.Open, k.Units
	status := func(ctx context.Context, c client.Client, name string) (*workflows.SourceConnectorStatus, error) {
		return queryStatus[workflows.SourceConnectorStatus](ctx, c, name, sk.WorkflowID(name), workflows.QuerySourceStatus)
	}
	return &Kind{
		Name: sk.Kind, SpecKinds: []string{sk.Kind}, WorkflowType: sk.ConnectorType, IDPrefix: sk.IDPrefix, Stream: open,
		Section: func(r *spec.Resolved) (Start, bool) {
			cfg := r.SourceStream
			if cfg == nil || cfg.SourceKind != sk {
				return Start{}, false
			}
			id := sk.WorkflowID(cfg.Name)
			return Start{Name: cfg.Name, Kind: sk.Kind, WorkflowID: id, WorkflowType: sk.ConnectorType,
				Source: sk.Kind + ":" + cfg.Describe, Input: workflows.SourceConnectorInput{Config: *cfg}, Config: *cfg,
				Started: fmt.Sprintf("connector %s started (workflow %s; one consumer per unit of %s)\n", cfg.Name, id, cfg.Describe)}, true
		},
		Status: func(ctx context.Context, c client.Client, name string) (Status, error) {
			st, err := status(ctx, c, name)
			return rendered(st, err, func(st *workflows.SourceConnectorStatus) Row { return sourceRow(st, unitNoun) },
				func(st *workflows.SourceConnectorStatus) string { return describeSource(st, sk, unitNoun) })
		},
		Register: func(r worker.Registry, _ Deps) {
			r.RegisterWorkflowWithOptions(workflows.SourceStreamConnector, workflow.RegisterOptions{Name: sk.ConnectorType})
			r.RegisterWorkflowWithOptions(workflows.SourceStreamConsumer, workflow.RegisterOptions{Name: sk.ConsumerType})
		},
		Reset: Reset{Style: ResetConsumers, Unit: unitNoun,
			Progress: func(ctx context.Context, c client.Client, name, id string) (applied, waiting []string, err error) {
				st, err := status(ctx, c, name)
				if err != nil {
					return nil, nil, err
				}
				for _, u := range st.Units {
					if u.LastReset == id {
						applied = append(applied, fmt.Sprintf("%s=%d", u.Unit, u.Checkpoint))
					} else {
						waiting = append(waiting, resetWaiting(u.Unit, u.LastError))
					}
				}
				return applied, waiting, nil
			}},
	}
}

func sourceState(st *workflows.SourceConnectorStatus) string {
	if st.Paused {
		return "paused"
	}
	for _, u := range st.Units {
		if u.Phase == "blocked" {
			return "blocked"
		}
	}
	return "running"
}

func sourceRow(st *workflows.SourceConnectorStatus, unitNoun string) Row {
	row := Row{Name: st.Name, Kind: st.Kind, State: sourceState(st), Processed: st.Records, Lag: int64(st.Lag),
		Position:  fmt.Sprintf("%s: %d %s, lag %d", st.Describe, len(st.Units), unitNoun, st.Lag),
		LastError: st.LastError}
	var last time.Time
	for _, u := range st.Units {
		if u.LastError != "" {
			row.LastError = u.Unit + ": " + u.LastError
		}
		if u.LastJob != "" && !u.Reported.Before(last) {
			row.LastJob, last = u.LastJob, u.Reported
		}
	}
	return row
}

// describeSource renders a source stream connector's status with one row
// per unit.
func describeSource(st *workflows.SourceConnectorStatus, sk workflows.SourceKind, unitNoun string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "connector   %s (workflow %s), kind %s, mode %s\nstate       %s\nsource      %s\n",
		st.Name, sk.WorkflowID(st.Name), st.Kind, st.Mode, sourceState(st), st.Describe)
	fmt.Fprintf(&b, "totals      %d records in %d batches, %d dead-lettered, lag %d\n", st.Records, st.Batches, st.DeadLettered, st.Lag)
	if st.LastError != "" {
		fmt.Fprintf(&b, "last error  %s\n", st.LastError)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tPHASE\tCHECKPOINT\tLAG\tRECORDS\tDEAD\tLAST JOB\tLAST ERROR\n", strings.ToUpper(strings.TrimSuffix(unitNoun, "s")))
	for _, u := range st.Units {
		checkpoint := "-"
		if u.Checkpoint > 0 {
			checkpoint = fmt.Sprint(u.Checkpoint)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", u.Unit, u.Phase, checkpoint, u.Lag, u.Records, u.DeadLettered, Dash(u.LastJob), Dash(u.LastError))
	}
	_ = tw.Flush()
	return b.String()
}

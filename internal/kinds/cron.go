package kinds

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// cronKind is the cron connector: new S3 objects on a schedule.
func cronKind() *Kind {
	return &Kind{
		Name: workflows.KindCron, SpecKinds: []string{workflows.KindCron},
		WorkflowType: workflows.CronWorkflowType, IDPrefix: workflows.CronWorkflowIDPrefix,
		Section: func(r *spec.Resolved) (Start, bool) {
			cfg := r.Cron
			if cfg == nil {
				return Start{}, false
			}
			id := workflows.CronWorkflowID(cfg.Name)
			return Start{Name: cfg.Name, Kind: workflows.KindCron, WorkflowID: id, WorkflowType: workflows.CronWorkflowType,
				Source: "s3://" + cfg.Source.Bucket + "/" + cfg.Source.Prefix, Input: workflows.CronInput{Config: *cfg}, Config: *cfg,
				Started: fmt.Sprintf("connector %s started (workflow %s)\n", cfg.Name, id)}, true
		},
		Status: func(ctx context.Context, c client.Client, name string) (Status, error) {
			st, err := queryStatus[workflows.CronStatus](ctx, c, name, workflows.CronWorkflowID(name), workflows.QueryCronStatus)
			return rendered(st, err, cronRow, describeCron)
		},
		Register: func(r worker.Registry, _ Deps) {
			r.RegisterWorkflowWithOptions(workflows.Cron, workflow.RegisterOptions{Name: workflows.CronWorkflowType})
			r.RegisterWorkflowWithOptions(workflows.CronBackfill, workflow.RegisterOptions{Name: workflows.CronBackfillWorkflowType})
		},
		Trigger: true, Backfill: true,
		Reset: Reset{Style: ResetCursor},
	}
}

// CronState is a cron connector's state: running (a tick), paused or
// waiting (for the next tick).
func CronState(st *workflows.CronStatus) string {
	switch {
	case st.Running:
		return "running"
	case st.Paused:
		return "paused"
	default:
		return "waiting"
	}
}

func cronRow(st *workflows.CronStatus) Row {
	row := Row{Name: st.Name, Kind: workflows.KindCron, State: CronState(st), Position: "key " + st.Cursor.Key,
		Processed: st.Counters.Objects, LastError: st.LastError}
	if st.LastBatch != nil {
		row.LastJob = st.LastBatch.JobID
	}
	return row
}

// describeCron renders a cron connector's status.
func describeCron(st *workflows.CronStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "connector   %s (workflow %s)\nstate       %s\nschedule    %s, next tick %s\n",
		st.Name, workflows.CronWorkflowID(st.Name), CronState(st), st.Schedule, when(st.NextTick))
	fmt.Fprintf(&b, "cursor      key %q, time %s, %d keys in the look-back window\n", st.Cursor.Key, when(st.Cursor.Time), st.DoneInWindow)
	fmt.Fprintf(&b, "counters    %d ticks, %d batches, %d objects, %d dead-lettered, %d failed ticks\n",
		st.Counters.Ticks, st.Counters.Batches, st.Counters.Objects, st.Counters.DeadLettered, st.Counters.FailedTicks)
	if lb := st.LastBatch; lb != nil {
		fmt.Fprintf(&b, "last batch  %s: %d objects %s … %s, %s, job %s\n", lb.ID, lb.Objects, lb.FirstKey, lb.LastKey, lb.Outcome, lb.JobID)
	}
	if st.LastError != "" {
		fmt.Fprintf(&b, "last error  %s\n", st.LastError)
	}
	return b.String()
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// Dash is s, or "-" when s is empty (table cells).
func Dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

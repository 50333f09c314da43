package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// kinesisStatus queries a Kinesis connector's aggregated status.
func (g *globals) kinesisStatus(ctx context.Context, c client.Client, name string) (*workflows.KinesisConnectorStatus, error) {
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

func kinesisRow(st *workflows.KinesisConnectorStatus) connectorRow {
	open := 0
	for _, s := range st.Shards {
		if !s.Finished {
			open++
		}
	}
	most := st.Behind(time.Now())
	row := connectorRow{Name: st.Name, Kind: "kinesis", State: kinesisState(st), Processed: st.Records,
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", s.Shard, dash(strings.Join(s.Parents, ",")), s.Phase, dash(s.Checkpoint),
			behind(s.Behind(now)), s.Records, s.DeadLettered, dash(s.LastJob), dash(s.LastError))
	}
	_ = tw.Flush()
	return b.String()
}

// behind writes how far a shard is behind, to the second.
func behind(d time.Duration) string { return d.Round(time.Second).String() }

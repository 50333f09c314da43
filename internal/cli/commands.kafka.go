package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// kafkaStatus queries a Kafka connector's aggregated status.
func (g *globals) kafkaStatus(cmd *cobra.Command, c client.Client, name string) (*workflows.KafkaConnectorStatus, error) {
	v, err := c.QueryWorkflow(cmd.Context(), workflows.KafkaWorkflowID(name), "", workflows.QueryPartitionStatus)
	if err != nil {
		return nil, connectorError(name, "", err)
	}
	var st workflows.KafkaConnectorStatus
	if err := v.Get(&st); err != nil {
		return nil, err
	}
	return &st, nil
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

func kafkaRow(st *workflows.KafkaConnectorStatus) connectorRow {
	row := connectorRow{Name: st.Name, Kind: "kafka", State: kafkaState(st), Processed: st.Records, Lag: st.Lag,
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
			p.Records, p.DeadLettered, dash(p.LastJob), dash(p.LastError))
	}
	_ = tw.Flush()
	return b.String()
}

func newResetCommand(g *globals) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "reset NAME --to earliest|latest|TIME|PARTITION=OFFSET,...",
		Short: "Move a paused Kafka or Kinesis connector's checkpoints (then resume it)",
		Long: `Move every partition's checkpoint of a paused Kafka connector: to the earliest
retained offset, to the end (latest), to the first offset at or after an RFC 3339
time, or to explicit offsets (partitions not listed keep theirs). The consumer
group mirrors the new checkpoints at once. A Kinesis connector's open shards move
to TRIM_HORIZON (earliest), the time of the reset (latest) or a time. The
connector must be paused, so no batch is in flight while its position moves.`,
		Example: `  starter pause web-events
  starter reset web-events --to earliest
  starter reset web-events --to 0=1200,1=980
  starter resume web-events`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := parseReset(to)
			if err != nil {
				return err
			}
			c, err := g.dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			h, err := c.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{
				WorkflowID: workflows.KafkaWorkflowID(args[0]), UpdateName: workflows.UpdateReset,
				Args: []interface{}{req}, WaitForStage: client.WorkflowUpdateStageCompleted,
			})
			if isNotFound(err) {
				h, err = c.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{
					WorkflowID: workflows.KinesisWorkflowID(args[0]), UpdateName: workflows.UpdateReset,
					Args: []interface{}{req}, WaitForStage: client.WorkflowUpdateStageCompleted,
				})
			}
			var n int
			if err == nil {
				err = h.Get(cmd.Context(), &n)
			}
			if err != nil {
				return connectorError(args[0], "reset", err)
			}
			return g.print(map[string]any{"name": args[0], "result": "reset", "partitions": n, "to": to},
				fmt.Sprintf("connector %s: %d partitions told to reset to %s; resume it to go on\n", args[0], n, to))
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "earliest, latest, an RFC 3339 time, or PARTITION=OFFSET[,PARTITION=OFFSET...]")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// parseReset reads --to.
func parseReset(to string) (workflows.ResetRequest, error) {
	switch to {
	case workflows.StartEarliest, workflows.StartLatest:
		return workflows.ResetRequest{To: to}, nil
	}
	if t, err := time.Parse(time.RFC3339, to); err == nil {
		return workflows.ResetRequest{To: workflows.StartTimestamp, Time: t}, nil
	}
	req := workflows.ResetRequest{To: workflows.StartOffsets, Offsets: map[int32]int64{}}
	for _, kv := range strings.Split(to, ",") {
		p, o, ok := strings.Cut(strings.TrimSpace(kv), "=")
		pi, perr := strconv.ParseInt(p, 10, 32)
		oi, oerr := strconv.ParseInt(o, 10, 64)
		if !ok || perr != nil || oerr != nil || pi < 0 || oi < 0 {
			return req, fmt.Errorf("--to: %q is not earliest, latest, an RFC 3339 time or PARTITION=OFFSET pairs such as 0=1200,1=980", to)
		}
		req.Offsets[int32(pi)] = oi
	}
	return req, nil
}

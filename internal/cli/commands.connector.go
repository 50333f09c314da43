package cli

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

func newConnectorCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newApplyCommand(g), newListCommand(g), newDescribeCommand(g),
		newSignalCommand(g, "pause", workflows.SignalPause, "Pause a connector (a running tick or batch finishes first)", "paused"),
		newSignalCommand(g, "resume", workflows.SignalResume, "Resume a paused connector from its cursor or checkpoints", "resumed"),
		newSignalCommand(g, "trigger", workflows.SignalTrigger, "Run a cron connector's tick now, even when paused", "triggered"),
		newBackfillCommand(g), newResetCommand(g), newDeleteCommand(g),
	}
}

func newApplyCommand(g *globals) *cobra.Command {
	var file string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f SPEC",
		Short: "Validate a connector spec, then start the connector or update it",
		Long: `Validate a connector spec (every problem is reported with its YAML path and
the fix), then start the connector, or, when it runs already, update it in place
through a validated Update: a rejected update changes nothing.`,
		Example: "  starter apply -f examples/connectors/web-logs.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New(`-f: required: the connector spec to apply`)
			}
			r, err := spec.LoadFile(file)
			if err != nil {
				return err
			}
			s := r.Spec
			if r.Kafka != nil {
				return g.applyKafka(cmd, r.Kafka, dryRun)
			}
			if r.Queue != nil {
				return g.applyQueue(cmd, r.Queue, dryRun)
			}
			if r.Kinesis != nil {
				return g.applyKinesis(cmd, r.Kinesis, dryRun)
			}
			cfg := r.Cron
			id := workflows.CronWorkflowID(s.Name)
			if dryRun {
				return g.print(map[string]string{"name": s.Name, "workflow_id": id, "result": "valid"},
					fmt.Sprintf("connector %s: spec is valid (workflow %s)\n", s.Name, id))
			}
			return g.startOrUpdate(cmd, connectorStart{name: s.Name, kind: "cron", id: id, workflowType: workflows.CronWorkflowType,
				input: workflows.CronInput{Config: *cfg}, config: *cfg, started: fmt.Sprintf("connector %s started (workflow %s)\n", s.Name, id)})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "connector spec (YAML)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate only; start nothing")
	return cmd
}

func (g *globals) status(cmd *cobra.Command, c client.Client, name string) (*workflows.CronStatus, error) {
	v, err := c.QueryWorkflow(cmd.Context(), workflows.CronWorkflowID(name), "", workflows.QueryCronStatus)
	if err != nil {
		return nil, connectorError(name, "", err)
	}
	var st workflows.CronStatus
	if err := v.Get(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// connectorRow is one line of `starter list`, whatever the kind.
type connectorRow struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	State     string `json:"state"`
	Position  string `json:"position"`
	Processed int64  `json:"processed"`
	Lag       int64  `json:"lag"`
	LastJob   string `json:"last_job,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

func newListCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List running connectors of every kind",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			var execs []*workflowpb.WorkflowExecutionInfo
			req := &workflowservice.ListWorkflowExecutionsRequest{
				Query: fmt.Sprintf("WorkflowType IN ('%s', '%s', '%s', '%s') AND ExecutionStatus = 'Running'",
					workflows.CronWorkflowType, workflows.KafkaConnectorWorkflowType, workflows.QueueWorkflowType, workflows.KinesisConnectorWorkflowType),
			}
			for {
				resp, err := c.ListWorkflow(cmd.Context(), req)
				if err != nil {
					return fmt.Errorf("listing connectors: %w", err)
				}
				execs = append(execs, resp.Executions...)
				if len(resp.NextPageToken) == 0 {
					break
				}
				req.NextPageToken = resp.NextPageToken
			}
			var rows []connectorRow
			for _, e := range execs {
				if e.Type.GetName() == workflows.QueueWorkflowType {
					st, err := g.queueStatus(cmd, c, strings.TrimPrefix(e.Execution.WorkflowId, workflows.QueueWorkflowIDPrefix))
					if err != nil {
						return err
					}
					rows = append(rows, queueRow(st))
					continue
				}
				if e.Type.GetName() == workflows.KinesisConnectorWorkflowType {
					st, err := g.kinesisStatus(cmd, c, strings.TrimPrefix(e.Execution.WorkflowId, workflows.KinesisWorkflowIDPrefix))
					if err != nil {
						return err
					}
					rows = append(rows, kinesisRow(st))
					continue
				}
				if e.Type.GetName() == workflows.KafkaConnectorWorkflowType {
					st, err := g.kafkaStatus(cmd, c, strings.TrimPrefix(e.Execution.WorkflowId, workflows.KafkaWorkflowIDPrefix))
					if err != nil {
						return err
					}
					rows = append(rows, kafkaRow(st))
					continue
				}
				st, err := g.status(cmd, c, strings.TrimPrefix(e.Execution.WorkflowId, workflows.CronWorkflowIDPrefix))
				if err != nil {
					return err
				}
				row := connectorRow{Name: st.Name, Kind: "cron", State: state(*st), Position: "key " + st.Cursor.Key,
					Processed: st.Counters.Objects, LastError: st.LastError}
				if st.LastBatch != nil {
					row.LastJob = st.LastBatch.JobID
				}
				rows = append(rows, row)
			}
			sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
			var b strings.Builder
			tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tSTATE\tPOSITION\tPROCESSED\tLAG\tLAST JOB\tLAST ERROR")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Name, r.Kind, r.State, r.Position, r.Processed, r.Lag, dash(r.LastJob), dash(r.LastError))
			}
			_ = tw.Flush()
			return g.print(rows, b.String())
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func state(st workflows.CronStatus) string {
	switch {
	case st.Running:
		return "running"
	case st.Paused:
		return "paused"
	default:
		return "waiting"
	}
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func newDescribeCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a connector's cursor, counters, last batch and last error",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := g.status(cmd, c, args[0])
			if err != nil {
				if kst, kerr := g.kafkaStatus(cmd, c, args[0]); kerr == nil {
					return g.print(kst, describeKafka(kst))
				}
				if qst, qerr := g.queueStatus(cmd, c, args[0]); qerr == nil {
					return g.print(qst, describeQueue(qst))
				}
				if kst, kerr := g.kinesisStatus(cmd, c, args[0]); kerr == nil {
					return g.print(kst, describeKinesis(kst))
				}
				return err
			}
			var b strings.Builder
			fmt.Fprintf(&b, "connector   %s (workflow %s)\nstate       %s\nschedule    %s, next tick %s\n",
				st.Name, workflows.CronWorkflowID(st.Name), state(*st), st.Schedule, when(st.NextTick))
			fmt.Fprintf(&b, "cursor      key %q, time %s, %d keys in the look-back window\n", st.Cursor.Key, when(st.Cursor.Time), st.DoneInWindow)
			fmt.Fprintf(&b, "counters    %d ticks, %d batches, %d objects, %d dead-lettered, %d failed ticks\n",
				st.Counters.Ticks, st.Counters.Batches, st.Counters.Objects, st.Counters.DeadLettered, st.Counters.FailedTicks)
			if lb := st.LastBatch; lb != nil {
				fmt.Fprintf(&b, "last batch  %s: %d objects %s … %s, %s, job %s\n", lb.ID, lb.Objects, lb.FirstKey, lb.LastKey, lb.Outcome, lb.JobID)
			}
			if st.LastError != "" {
				fmt.Fprintf(&b, "last error  %s\n", st.LastError)
			}
			return g.print(st, b.String())
		},
	}
}

func newSignalCommand(g *globals, use, signal, short, done string) *cobra.Command {
	return &cobra.Command{
		Use:   use + " NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ids := connectorWorkflowIDs(args[0])
			if signal == workflows.SignalTrigger {
				ids = ids[:1] // cron only
			}
			for _, id := range ids {
				if err = c.SignalWorkflow(cmd.Context(), id, "", signal, nil); !isNotFound(err) {
					break
				}
			}
			if err != nil {
				return connectorError(args[0], use, err)
			}
			return g.print(map[string]string{"name": args[0], "result": done}, fmt.Sprintf("connector %s %s\n", args[0], done))
		},
	}
}

func newBackfillCommand(g *globals) *cobra.Command {
	var from, to string
	var wait bool
	cmd := &cobra.Command{
		Use:   "backfill NAME --from TIME --to TIME",
		Short: "Process the objects last modified in [from, to) again, beside the live schedule",
		Long: `Start a backfill: the objects under the connector's prefix whose LastModified
is in [--from, --to) run again in batches of their own. The live schedule and
its cursor are untouched.`,
		Example: "  starter backfill web-logs --from 2026-11-26T00:00:00Z --to 2026-11-27T00:00:00Z",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := time.Parse(time.RFC3339, from)
			if err != nil {
				return fmt.Errorf("--from: %q is not an RFC 3339 time such as 2026-11-26T00:00:00Z", from)
			}
			t, err := time.Parse(time.RFC3339, to)
			if err != nil {
				return fmt.Errorf("--to: %q is not an RFC 3339 time such as 2026-11-27T00:00:00Z", to)
			}
			if !f.Before(t) {
				return fmt.Errorf("--from (%s) must be before --to (%s)", from, to)
			}
			c, err := g.dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			h, err := c.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{
				WorkflowID: workflows.CronWorkflowID(args[0]), UpdateName: workflows.UpdateBackfill,
				Args: []interface{}{workflows.BackfillRequest{From: f, To: t}}, WaitForStage: client.WorkflowUpdateStageCompleted,
			})
			var id string
			if err == nil {
				err = h.Get(cmd.Context(), &id)
			}
			if err != nil {
				return fmt.Errorf("backfill %s: %w", args[0], err)
			}
			if !wait {
				return g.print(map[string]string{"name": args[0], "backfill_workflow_id": id},
					fmt.Sprintf("backfill started (workflow %s)\n", id))
			}
			var res workflows.BackfillResult
			if err := c.GetWorkflow(cmd.Context(), id, "").Get(cmd.Context(), &res); err != nil {
				return fmt.Errorf("backfill %s: %w", id, err)
			}
			return g.print(res, fmt.Sprintf("backfill %s done: %d batches, %d objects, %d dead-lettered\n", id, res.Batches, res.Objects, res.DeadLettered))
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "start of the range, RFC 3339 (inclusive)")
	cmd.Flags().StringVar(&to, "to", "", "end of the range, RFC 3339 (exclusive)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the backfill to finish and print its counts")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func newDeleteCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Stop a connector: its workflow is cancelled and its running task stopped",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			for _, id := range connectorWorkflowIDs(args[0]) {
				if err = c.CancelWorkflow(cmd.Context(), id, ""); !isNotFound(err) {
					break
				}
			}
			if err != nil {
				return connectorError(args[0], "delete", err)
			}
			return g.print(map[string]string{"name": args[0], "result": "deleted"}, fmt.Sprintf("connector %s deleted\n", args[0]))
		},
	}
}

// connectorStart is what startOrUpdate needs to start a connector's
// workflow, or to update a running one.
type connectorStart struct {
	name, kind, id, workflowType string
	// input starts the workflow; config is the update-spec argument.
	input, config any
	// started is the message printed when the workflow started.
	started string
}

// startOrUpdate starts a connector's workflow, or, when it runs already,
// sends its new configuration as a validated update-spec Update (a rejected
// one changes nothing).
func (g *globals) startOrUpdate(cmd *cobra.Command, cs connectorStart) error {
	c, err := g.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.ExecuteWorkflow(cmd.Context(), client.StartWorkflowOptions{ID: cs.id, TaskQueue: g.taskQueue,
		WorkflowExecutionErrorWhenAlreadyStarted: true}, cs.workflowType, cs.input)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case err == nil:
		return g.print(map[string]string{"name": cs.name, "kind": cs.kind, "workflow_id": cs.id, "result": "started"}, cs.started)
	case errors.As(err, &started):
	default:
		return fmt.Errorf("starting %s: %w", cs.id, err)
	}
	h, err := c.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{
		WorkflowID: cs.id, UpdateName: workflows.UpdateSpec, Args: []interface{}{cs.config},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(cmd.Context(), nil)
	}
	if err != nil {
		return fmt.Errorf("updating connector %s: %w", cs.name, err)
	}
	return g.print(map[string]string{"name": cs.name, "kind": cs.kind, "workflow_id": cs.id, "result": "updated"},
		fmt.Sprintf("connector %s updated (workflow %s; applied between ticks or batches)\n", cs.name, cs.id))
}

// connectorWorkflowIDs are the workflow IDs a connector called name may
// have, one per kind family (cron, kafka, queue, kinesis).
func connectorWorkflowIDs(name string) []string {
	return []string{workflows.CronWorkflowID(name), workflows.KafkaWorkflowID(name), workflows.QueueWorkflowID(name), workflows.KinesisWorkflowID(name)}
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}

// connectorError words an error of operation op on connector name, telling a
// missing connector apart.
func connectorError(name, op string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("connector %s: not found (starter list shows the running ones)", name)
	}
	if op == "" {
		return fmt.Errorf("connector %s: %w", name, err)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

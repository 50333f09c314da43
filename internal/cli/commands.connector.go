package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
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
	var dryRun, diff bool
	cmd := &cobra.Command{
		Use:   "apply -f SPEC|FOLDER",
		Short: "Validate connector specs, then start the connectors or update them",
		Long: `Validate a connector spec, or every *.yaml / *.yml spec in a folder (every
problem is reported with its file, YAML path and the fix, and nothing starts
while any spec is invalid), then start each connector, or, when it runs
already, update it in place through a validated Update: a rejected update
changes nothing. --diff shows what would change against the running
connectors (their "config" query) and changes nothing.`,
		Example: `  starter apply -f examples/connectors/web-logs.yaml
  starter apply -f examples/connectors/ --diff
  starter apply -f examples/connectors/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New(`-f: required: the connector spec (or a folder of specs) to apply`)
			}
			files, err := specFiles(file)
			if err != nil {
				return err
			}
			var starts []connectorStart
			var problems []error
			for _, f := range files {
				r, err := spec.LoadFile(f)
				if err != nil {
					problems = append(problems, err)
					continue
				}
				starts = append(starts, connectorStartFor(r))
			}
			if len(problems) > 0 {
				return errors.Join(problems...)
			}
			for i, cs := range starts {
				if len(starts) > 1 {
					fmt.Fprintf(g.stderr, "[%d/%d] %s (%s)\n", i+1, len(starts), cs.name, cs.kind)
				}
				switch {
				case dryRun:
					err = g.print(map[string]string{"name": cs.name, "kind": cs.kind, "workflow_id": cs.id, "result": "valid"},
						fmt.Sprintf("connector %s: %s spec is valid (workflow %s)\n", cs.name, cs.kind, cs.id))
				case diff:
					err = g.diff(cmd, cs)
				default:
					err = g.startOrUpdate(cmd, cs)
				}
				if err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "connector spec (YAML), or a folder of them")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate only; start nothing")
	cmd.Flags().BoolVar(&diff, "diff", false, "show what would change against the running connectors; change nothing")
	return cmd
}

// specFiles is path itself, or the *.yaml and *.yml files in the folder
// path, sorted.
func specFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("-f: %w", err)
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("-f: %w", err)
	}
	var files []string
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
			files = append(files, filepath.Join(path, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("-f: no *.yaml or *.yml spec in %s", path)
	}
	sort.Strings(files)
	return files, nil
}

// connectorStartFor is how a resolved spec's connector starts or updates.
func connectorStartFor(r *spec.Resolved) connectorStart {
	switch {
	case r.Kafka != nil:
		cfg := r.Kafka
		id := workflows.KafkaWorkflowID(cfg.Name)
		return connectorStart{name: cfg.Name, kind: "kafka", id: id, workflowType: workflows.KafkaConnectorWorkflowType, source: "kafka:" + cfg.Topic,
			input: workflows.KafkaConnectorInput{Config: *cfg}, config: *cfg,
			started: fmt.Sprintf("connector %s started (workflow %s; one consumer per partition of %s)\n", cfg.Name, id, cfg.Topic)}
	case r.Queue != nil:
		cfg := r.Queue
		id := workflows.QueueWorkflowID(cfg.Name)
		source := "sqs:" + cfg.Queue
		if cfg.SNS != nil {
			source = cfg.SNS.TopicARN
		}
		return connectorStart{name: cfg.Name, kind: cfg.Kind, id: id, workflowType: workflows.QueueWorkflowType, source: source,
			input: workflows.QueueInput{Config: *cfg}, config: *cfg,
			started: fmt.Sprintf("connector %s started (workflow %s; %d poller(s) on %s)\n", cfg.Name, id, cfg.Concurrency, cfg.Queue)}
	case r.Kinesis != nil:
		cfg := r.Kinesis
		id := workflows.KinesisWorkflowID(cfg.Name)
		return connectorStart{name: cfg.Name, kind: "kinesis", id: id, workflowType: workflows.KinesisConnectorWorkflowType, source: "kinesis:" + cfg.Stream,
			input: workflows.KinesisConnectorInput{Config: *cfg}, config: *cfg,
			started: fmt.Sprintf("connector %s started (workflow %s; one consumer per shard of %s, following splits and merges)\n", cfg.Name, id, cfg.Stream)}
	default:
		cfg := r.Cron
		id := workflows.CronWorkflowID(cfg.Name)
		return connectorStart{name: cfg.Name, kind: "cron", id: id, workflowType: workflows.CronWorkflowType, source: "s3://" + cfg.Source.Bucket + "/" + cfg.Source.Prefix,
			input: workflows.CronInput{Config: *cfg}, config: *cfg, started: fmt.Sprintf("connector %s started (workflow %s)\n", cfg.Name, id)}
	}
}

// startOptions are the connector's workflow start options: ID, task
// queue, memo and the search attributes registered says exist.
func (cs connectorStart) startOptions(taskQueue string, registered func(string) bool) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{ID: cs.id, TaskQueue: taskQueue, WorkflowExecutionErrorWhenAlreadyStarted: true,
		Memo:                  map[string]any{"connector": cs.name, "kind": cs.kind, "source": cs.source},
		TypedSearchAttributes: workflows.ConnectorSearchAttributes(cs.name, cs.kind, cs.source, registered)}
}

// StartConnector starts the connector of a resolved spec as `starter
// apply` does (same ID, memo and search attributes; every attribute is
// taken as registered), for callers with their own client such as make dev.
func StartConnector(ctx context.Context, c client.Client, r *spec.Resolved, taskQueue string) (client.WorkflowRun, error) {
	cs := connectorStartFor(r)
	return c.ExecuteWorkflow(ctx, cs.startOptions(taskQueue, func(string) bool { return true }), cs.workflowType, cs.input)
}

// fieldChange is one difference --diff reports.
type fieldChange struct {
	Field string `json:"field"`
	From  any    `json:"from,omitempty"`
	To    any    `json:"to,omitempty"`
}

// diff compares a spec's configuration with the running connector's
// (its config query), field by field, and prints what apply would do.
func (g *globals) diff(cmd *cobra.Command, cs connectorStart) error {
	c, err := g.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	res := map[string]any{"name": cs.name, "kind": cs.kind, "workflow_id": cs.id}
	v, err := c.QueryWorkflow(cmd.Context(), cs.id, "", workflows.QueryConfig)
	if isNotFound(err) {
		res["result"] = "would start"
		return g.print(res, fmt.Sprintf("connector %s (%s): not running; apply would start it (workflow %s)\n", cs.name, cs.kind, cs.id))
	}
	var running any
	if err == nil {
		err = v.Get(&running)
	}
	if err != nil {
		return connectorError(cs.name, "diff", err)
	}
	raw, err := json.Marshal(cs.config)
	if err != nil {
		return err
	}
	var wanted any
	if err := json.Unmarshal(raw, &wanted); err != nil {
		return err
	}
	before, after := map[string]any{}, map[string]any{}
	flatten("", running, before)
	flatten("", wanted, after)
	var changes []fieldChange
	for k, a := range after {
		if b, ok := before[k]; !ok || !reflect.DeepEqual(a, b) {
			changes = append(changes, fieldChange{Field: k, From: before[k], To: a})
		}
	}
	for k, b := range before {
		if _, ok := after[k]; !ok {
			changes = append(changes, fieldChange{Field: k, From: b})
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Field < changes[j].Field })
	res["changes"] = changes
	var b strings.Builder
	if len(changes) == 0 {
		res["result"] = "unchanged"
		fmt.Fprintf(&b, "connector %s (%s): unchanged\n", cs.name, cs.kind)
	} else {
		res["result"] = "would update"
		fmt.Fprintf(&b, "connector %s (%s): apply would update %d field(s):\n", cs.name, cs.kind, len(changes))
		for _, ch := range changes {
			fmt.Fprintf(&b, "  %s: %s → %s\n", ch.Field, show(ch.From), show(ch.To))
		}
	}
	return g.print(res, b.String())
}

// flatten turns decoded JSON into path → leaf value (objects by field,
// arrays by index).
func flatten(prefix string, v any, out map[string]any) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			flatten(join(k), e, out)
		}
	case []any:
		for i, e := range t {
			flatten(join(strconv.Itoa(i)), e, out)
		}
	default:
		out[prefix] = v
	}
}

func show(v any) string {
	if v == nil {
		return "(unset)"
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(raw)
}

func (g *globals) status(ctx context.Context, c client.Client, name string) (*workflows.CronStatus, error) {
	return queryStatus[workflows.CronStatus](ctx, c, name, workflows.CronWorkflowID(name), workflows.QueryCronStatus)
}

// connectorRow is one line of `starter list`, whatever the kind.
type connectorRow struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	State     string `json:"state"`
	Position  string `json:"position"`
	Processed int64  `json:"processed"`
	Lag       int64  `json:"lag"`
	// BehindMillis (Kinesis) is how far the furthest-behind shard is.
	BehindMillis int64  `json:"behind_ms,omitempty"`
	LastJob      string `json:"last_job,omitempty"`
	LastError    string `json:"last_error,omitempty"`
}

// listQueries bounds the status queries `list` runs at once; listQueryTimeout
// bounds each: a connector that does not answer (no worker polls its task
// queue) is listed as unreachable, with the error, instead of failing the
// list.
const (
	listQueries      = 8
	listQueryTimeout = 10 * time.Second
)

// listRow queries one running connector's status for `list`.
func (g *globals) listRow(cmd *cobra.Command, c client.Client, e *workflowpb.WorkflowExecutionInfo) connectorRow {
	ctx, cancel := context.WithTimeout(cmd.Context(), listQueryTimeout)
	defer cancel()
	id := e.Execution.WorkflowId
	unreachable := func(kind, prefix string, err error) connectorRow {
		return connectorRow{Name: strings.TrimPrefix(id, prefix), Kind: kind, State: "unreachable", Position: "-",
			LastError: fmt.Sprintf("status query: %v (is a worker polling the connector's task queue?)", err)}
	}
	switch e.Type.GetName() {
	case workflows.QueueWorkflowType:
		st, err := g.queueStatus(ctx, c, strings.TrimPrefix(id, workflows.QueueWorkflowIDPrefix))
		if err != nil {
			return unreachable("queue", workflows.QueueWorkflowIDPrefix, err)
		}
		return queueRow(st)
	case workflows.KinesisConnectorWorkflowType:
		st, err := g.kinesisStatus(ctx, c, strings.TrimPrefix(id, workflows.KinesisWorkflowIDPrefix))
		if err != nil {
			return unreachable("kinesis", workflows.KinesisWorkflowIDPrefix, err)
		}
		return kinesisRow(st)
	case workflows.KafkaConnectorWorkflowType:
		st, err := g.kafkaStatus(ctx, c, strings.TrimPrefix(id, workflows.KafkaWorkflowIDPrefix))
		if err != nil {
			return unreachable("kafka", workflows.KafkaWorkflowIDPrefix, err)
		}
		return kafkaRow(st)
	}
	st, err := g.status(ctx, c, strings.TrimPrefix(id, workflows.CronWorkflowIDPrefix))
	if err != nil {
		return unreachable("cron", workflows.CronWorkflowIDPrefix, err)
	}
	row := connectorRow{Name: st.Name, Kind: "cron", State: state(*st), Position: "key " + st.Cursor.Key,
		Processed: st.Counters.Objects, LastError: st.LastError}
	if st.LastBatch != nil {
		row.LastJob = st.LastBatch.JobID
	}
	return row
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
			rows := make([]connectorRow, len(execs))
			var wg sync.WaitGroup
			slots := make(chan struct{}, listQueries)
			for i, e := range execs {
				wg.Add(1)
				slots <- struct{}{}
				go func() {
					defer func() { <-slots; wg.Done() }()
					rows[i] = g.listRow(cmd, c, e)
				}()
			}
			wg.Wait()
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
			st, err := g.status(cmd.Context(), c, args[0])
			if err != nil {
				kst, kerr := g.kafkaStatus(cmd.Context(), c, args[0])
				if kerr == nil {
					return g.print(kst, describeKafka(kst))
				}
				qst, qerr := g.queueStatus(cmd.Context(), c, args[0])
				if qerr == nil {
					return g.print(qst, describeQueue(qst))
				}
				nst, nerr := g.kinesisStatus(cmd.Context(), c, args[0])
				if nerr == nil {
					return g.print(nst, describeKinesis(nst))
				}
				// A connector that is there but cannot answer says why.
				for _, e := range []error{err, kerr, qerr, nerr} {
					if !errors.Is(e, errConnectorNotFound) {
						return e
					}
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
			if isNotFound(err) && signal == workflows.SignalTrigger {
				return cronOnly(cmd, c, args[0], use, err)
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
			if isNotFound(err) {
				return cronOnly(cmd, c, args[0], "backfill", err)
			}
			if err != nil {
				return fmt.Errorf("backfill %s: %w", args[0], err)
			}
			if !wait {
				return g.print(map[string]string{"name": args[0], "backfill_workflow_id": id},
					fmt.Sprintf("backfill started (workflow %s)\n", id))
			}
			res, err := g.waitBackfill(cmd, c, id)
			if err != nil {
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
	// source names what it reads (search attribute ConnectorSource).
	source string
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
	missing := g.missingSearchAttributes(cmd, c)
	opts := cs.startOptions(g.taskQueue, func(name string) bool { return !slices.Contains(missing, name) })
	if len(missing) > 0 {
		fmt.Fprintf(g.stderr, "note: search attributes %s are not registered in namespace %s, so the connector starts without them; register them once to filter connectors in the Temporal UI:\n", strings.Join(missing, ", "), g.temporal.Namespace)
		for _, m := range missing {
			fmt.Fprintf(g.stderr, "  temporal operator search-attribute create --namespace %s --name %s --type %s\n", g.temporal.Namespace, m, workflows.SearchAttributeTypes()[m])
		}
	}
	if cfg, ok := cs.config.(workflows.QueueConfig); ok {
		if note := redriveNote(cmd.Context(), cfg); note != "" {
			fmt.Fprint(g.stderr, note)
		}
	}
	_, err = c.ExecuteWorkflow(cmd.Context(), opts, cs.workflowType, cs.input)
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
	var answer any
	if err == nil {
		err = h.Get(cmd.Context(), &answer)
	}
	if err != nil {
		return fmt.Errorf("updating connector %s: %w", cs.name, err)
	}
	// A stream connector on the older consumer types says it moves them
	// onto the stream engine ("updated; moving ...").
	more, _ := answer.(string)
	more = strings.TrimPrefix(strings.TrimPrefix(more, "updated"), "; ")
	res := map[string]string{"name": cs.name, "kind": cs.kind, "workflow_id": cs.id, "result": "updated"}
	text := fmt.Sprintf("connector %s updated (workflow %s; applied between ticks or batches)\n", cs.name, cs.id)
	if more != "" {
		res["note"] = more
		text += "  " + more + "\n"
	}
	return g.print(res, text)
}

// waitBackfill waits for a backfill to finish, printing its progress to
// stderr every few seconds.
func (g *globals) waitBackfill(cmd *cobra.Command, c client.Client, id string) (workflows.BackfillResult, error) {
	var res workflows.BackfillResult
	run := c.GetWorkflow(cmd.Context(), id, "")
	done := make(chan error, 1)
	go func() { done <- run.Get(cmd.Context(), &res) }()
	tick := time.NewTicker(backfillProgressEvery)
	defer tick.Stop()
	last := ""
	for {
		select {
		case err := <-done:
			return res, err
		case <-tick.C:
			v, err := c.QueryWorkflow(cmd.Context(), id, "", workflows.QueryBackfillProgress)
			var p workflows.BackfillProgress
			if err != nil || v.Get(&p) != nil {
				continue // an older worker or a finishing run: the result comes
			}
			line := fmt.Sprintf("backfill %s: %d batches, %d objects, %d dead-lettered so far (last key %s)\n", id, p.Batches, p.Objects, p.DeadLettered, dash(p.LastKey))
			if line != last {
				fmt.Fprint(g.stderr, line)
				last = line
			}
		}
	}
}

// backfillProgressEvery is how often backfill --wait reports progress.
const backfillProgressEvery = 2 * time.Second

// cronOnly words the error of a cron-only verb (trigger, backfill) on a
// connector that is not a cron connector, or not there at all.
func cronOnly(cmd *cobra.Command, c client.Client, name, op string, notFound error) error {
	for _, id := range connectorWorkflowIDs(name)[1:] {
		if _, err := c.DescribeWorkflow(cmd.Context(), id, ""); err == nil {
			kind := strings.TrimSuffix(id[:len(id)-len(name)], "-")
			return fmt.Errorf("%s: connector %s is a %s connector; %s is for cron connectors (stream and queue connectors run continuously: use reset to reprocess a stream)", op, name, kind, op)
		}
	}
	return connectorError(name, op, notFound)
}

// missingSearchAttributes lists the connectors' custom search attributes
// the namespace lacks (all of them when they cannot be listed).
func (g *globals) missingSearchAttributes(cmd *cobra.Command, c client.Client) []string {
	var missing []string
	resp, err := c.OperatorService().ListSearchAttributes(cmd.Context(), &operatorservice.ListSearchAttributesRequest{Namespace: g.temporal.Namespace})
	for name := range workflows.SearchAttributeTypes() {
		if err != nil || resp.CustomAttributes[name] == enumspb.INDEXED_VALUE_TYPE_UNSPECIFIED {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	return missing
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

// errConnectorNotFound is a connector with no running workflow of any kind.
var errConnectorNotFound = errors.New("not found (starter list shows the running ones)")

// queryStatus asks a connector workflow's status query and decodes the
// answer, naming the likely cause when it cannot be decoded.
func queryStatus[T any](ctx context.Context, c client.Client, name, workflowID, query string) (*T, error) {
	v, err := c.QueryWorkflow(ctx, workflowID, "", query)
	if err != nil {
		return nil, connectorError(name, "", err)
	}
	var st T
	if err := v.Get(&st); err != nil {
		return nil, fmt.Errorf("connector %s: decoding the %s query of %s: %w (if the workers encrypt history, give the starter the same --codec-key-file)", name, query, workflowID, err)
	}
	return &st, nil
}

// connectorError words an error of operation op on connector name, telling a
// missing connector apart.
func connectorError(name, op string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("connector %s: %w", name, errConnectorNotFound)
	}
	if op == "" {
		return fmt.Errorf("connector %s: %w", name, err)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

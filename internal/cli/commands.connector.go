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

	"github.com/bacalhau-connect/bacalhau-connect/internal/kinds"
	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

func newConnectorCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newApplyCommand(g), newListCommand(g), newDescribeCommand(g),
		newSignalCommand(g, "pause", workflows.SignalPause, "Pause a connector (a running tick or batch finishes first)", "paused", nil),
		newSignalCommand(g, "resume", workflows.SignalResume, "Resume a paused connector from its cursor or checkpoints", "resumed", nil),
		newSignalCommand(g, "trigger", workflows.SignalTrigger, "Run a connector's tick now, even when paused ("+g.servedBy(servesTrigger)+")", "triggered", servesTrigger),
		newBackfillCommand(g), newResetCommand(g), newDeleteCommand(g),
	}
}

// servesTrigger and servesBackfill pick the kinds of those verbs.
func servesTrigger(k *kinds.Kind) bool  { return k.Trigger }
func servesBackfill(k *kinds.Kind) bool { return k.Backfill }

// servedBy names the kinds a verb serves, for its help: "cron connectors".
func (g *globals) servedBy(serves func(*kinds.Kind) bool) string {
	return strings.Join(g.kinds.Serving(serves), " and ") + " connectors"
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
			var starts []applied
			var problems []error
			for _, f := range files {
				r, err := g.kinds.Loader().LoadFile(f)
				if err != nil {
					problems = append(problems, err)
					continue
				}
				k, s, err := g.kinds.ForSpec(r)
				if err != nil {
					problems = append(problems, err)
					continue
				}
				starts = append(starts, applied{kind: k, Start: s})
			}
			if len(problems) > 0 {
				return errors.Join(problems...)
			}
			for i, cs := range starts {
				if len(starts) > 1 {
					fmt.Fprintf(g.stderr, "[%d/%d] %s (%s)\n", i+1, len(starts), cs.Name, cs.Kind)
				}
				switch {
				case dryRun:
					err = g.print(map[string]string{"name": cs.Name, "kind": cs.Kind, "workflow_id": cs.WorkflowID, "result": "valid"},
						fmt.Sprintf("connector %s: %s spec is valid (workflow %s)\n", cs.Name, cs.Kind, cs.WorkflowID))
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

// applied is a spec's connector on its way to apply: its kind and start.
type applied struct {
	kind *kinds.Kind
	kinds.Start
}

// StartConnector starts the connector of a resolved spec as `starter
// apply` does (same ID, memo and search attributes; every attribute is
// taken as registered), for callers with their own client such as make dev.
func StartConnector(ctx context.Context, c client.Client, r *spec.Resolved, taskQueue string) (client.WorkflowRun, error) {
	_, s, err := kinds.All().ForSpec(r)
	if err != nil {
		return nil, err
	}
	return c.ExecuteWorkflow(ctx, s.Options(taskQueue, func(string) bool { return true }), s.WorkflowType, s.Input)
}

// fieldChange is one difference --diff reports.
type fieldChange struct {
	Field string `json:"field"`
	From  any    `json:"from,omitempty"`
	To    any    `json:"to,omitempty"`
}

// diff compares a spec's configuration with the running connector's
// (its config query), field by field, and prints what apply would do.
func (g *globals) diff(cmd *cobra.Command, cs applied) error {
	c, err := g.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	res := map[string]any{"name": cs.Name, "kind": cs.Kind, "workflow_id": cs.WorkflowID}
	if err := g.refuseOtherKind(cmd, c, cs); err != nil {
		return err
	}
	v, err := c.QueryWorkflow(cmd.Context(), cs.WorkflowID, "", workflows.QueryConfig)
	if kinds.IsNotFound(err) {
		res["result"] = "would start"
		return g.print(res, fmt.Sprintf("connector %s (%s): not running; apply would start it (workflow %s)\n", cs.Name, cs.Kind, cs.WorkflowID))
	}
	var running any
	if err == nil {
		err = v.Get(&running)
	}
	if err != nil {
		return kinds.ConnectorError(cs.Name, "diff", err)
	}
	raw, err := json.Marshal(cs.Config)
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
		fmt.Fprintf(&b, "connector %s (%s): unchanged\n", cs.Name, cs.Kind)
	} else {
		res["result"] = "would update"
		fmt.Fprintf(&b, "connector %s (%s): apply would update %d field(s):\n", cs.Name, cs.Kind, len(changes))
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

// listQueries bounds the status queries `list` runs at once; listQueryTimeout
// bounds each: a connector that does not answer (no worker polls its task
// queue) is listed as unreachable, with the error, instead of failing the
// list.
const (
	listQueries      = 8
	listQueryTimeout = 10 * time.Second
)

// listRow queries one running connector's status for `list`.
func (g *globals) listRow(cmd *cobra.Command, c client.Client, e *workflowpb.WorkflowExecutionInfo) kinds.Row {
	ctx, cancel := context.WithTimeout(cmd.Context(), listQueryTimeout)
	defer cancel()
	id := e.Execution.WorkflowId
	k, ok := g.kinds.ByWorkflowType(e.Type.GetName())
	if !ok {
		return kinds.Row{Name: id, Kind: e.Type.GetName(), State: "unknown", Position: "-", LastError: "no kind has this workflow type (an older starter?)"}
	}
	st, err := k.Status(ctx, c, strings.TrimPrefix(id, k.IDPrefix))
	if err != nil {
		return kinds.Row{Name: strings.TrimPrefix(id, k.IDPrefix), Kind: k.Name, State: "unreachable", Position: "-",
			LastError: fmt.Sprintf("status query: %v (is a worker polling the connector's task queue?)", err)}
	}
	return st.Row
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
				Query: fmt.Sprintf("WorkflowType IN ('%s') AND ExecutionStatus = 'Running'", strings.Join(g.kinds.WorkflowTypes(), "', '")),
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
			rows := make([]kinds.Row, len(execs))
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
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Name, r.Kind, r.State, r.Position, r.Processed, r.Lag, kinds.Dash(r.LastJob), kinds.Dash(r.LastError))
			}
			_ = tw.Flush()
			return g.print(rows, b.String())
		},
	}
}

func newDescribeCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a connector's position, counters, last batch and last error",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.dial(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			found, err := g.kinds.Find(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			st, err := found.Kind.Status(cmd.Context(), c, found.Name)
			if err != nil {
				return err
			}
			return g.print(st.Value, st.Text)
		},
	}
}

// newSignalCommand is a verb that sends a connector one signal. serves
// says which kinds take it (nil: every kind).
func newSignalCommand(g *globals, use, signal, short, done string, serves func(*kinds.Kind) bool) *cobra.Command {
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
			found, err := g.kinds.Find(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if serves != nil && !serves(found.Kind) {
				return g.notServed(found, use, serves)
			}
			if err := c.SignalWorkflow(cmd.Context(), found.WorkflowID, "", signal, nil); err != nil {
				return kinds.ConnectorError(args[0], use, err)
			}
			return g.print(map[string]string{"name": args[0], "result": done}, fmt.Sprintf("connector %s %s\n", args[0], done))
		},
	}
}

// notServed words a kind-specific verb (trigger, backfill) used on a
// connector of a kind that does not serve it.
func (g *globals) notServed(found kinds.Running, verb string, serves func(*kinds.Kind) bool) error {
	return fmt.Errorf("%s: connector %s is a %s connector; %s is for %s (stream and queue connectors run continuously: use reset to reprocess a stream)",
		verb, found.Name, found.Kind.Name, verb, g.servedBy(serves))
}

func newBackfillCommand(g *globals) *cobra.Command {
	var from, to string
	var wait bool
	cmd := &cobra.Command{
		Use:   "backfill NAME --from TIME --to TIME",
		Short: "Process the objects last modified in [from, to) again, beside the live schedule (" + g.servedBy(servesBackfill) + ")",
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
			found, err := g.kinds.Find(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if !found.Kind.Backfill {
				return g.notServed(found, "backfill", servesBackfill)
			}
			h, err := c.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{
				WorkflowID: found.WorkflowID, UpdateName: workflows.UpdateBackfill,
				Args: []interface{}{workflows.BackfillRequest{From: f, To: t}}, WaitForStage: client.WorkflowUpdateStageCompleted,
			})
			var id string
			if err == nil {
				err = h.Get(cmd.Context(), &id)
			}
			if err != nil {
				return kinds.ConnectorError(args[0], "backfill", err)
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
			found, err := g.kinds.Find(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if err := c.CancelWorkflow(cmd.Context(), found.WorkflowID, ""); err != nil {
				return kinds.ConnectorError(args[0], "delete", err)
			}
			return g.print(map[string]string{"name": args[0], "result": "deleted"}, fmt.Sprintf("connector %s deleted\n", args[0]))
		},
	}
}

// startOrUpdate starts a connector's workflow, or, when it runs already,
// sends its new configuration as a validated update-spec Update (a rejected
// one changes nothing).
func (g *globals) startOrUpdate(cmd *cobra.Command, cs applied) error {
	c, err := g.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := g.refuseOtherKind(cmd, c, cs); err != nil {
		return err
	}
	missing := g.missingSearchAttributes(cmd, c)
	opts := cs.Options(g.taskQueue, func(name string) bool { return !slices.Contains(missing, name) })
	if len(missing) > 0 {
		fmt.Fprintf(g.stderr, "note: search attributes %s are not registered in namespace %s, so the connector starts without them; register them once to filter connectors in the Temporal UI:\n", strings.Join(missing, ", "), g.temporal.Namespace)
		for _, m := range missing {
			fmt.Fprintf(g.stderr, "  temporal operator search-attribute create --namespace %s --name %s --type %s\n", g.temporal.Namespace, m, workflows.SearchAttributeTypes()[m])
		}
	}
	if cs.kind.ApplyNote != nil {
		if note := cs.kind.ApplyNote(cmd.Context(), cs.Start); note != "" {
			fmt.Fprint(g.stderr, note)
		}
	}
	_, err = c.ExecuteWorkflow(cmd.Context(), opts, cs.WorkflowType, cs.Input)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case err == nil:
		return g.print(map[string]string{"name": cs.Name, "kind": cs.Kind, "workflow_id": cs.WorkflowID, "result": "started"}, cs.Started)
	case errors.As(err, &started):
	default:
		return fmt.Errorf("starting %s: %w", cs.WorkflowID, err)
	}
	h, err := c.UpdateWorkflow(cmd.Context(), client.UpdateWorkflowOptions{
		WorkflowID: cs.WorkflowID, UpdateName: workflows.UpdateSpec, Args: []interface{}{cs.Config},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var answer any
	if err == nil {
		err = h.Get(cmd.Context(), &answer)
	}
	if err != nil {
		return fmt.Errorf("updating connector %s: %w", cs.Name, err)
	}
	// A stream connector on the older consumer types says it moves them
	// onto the stream engine ("updated; moving ...").
	more, _ := answer.(string)
	more = strings.TrimPrefix(strings.TrimPrefix(more, "updated"), "; ")
	res := map[string]string{"name": cs.Name, "kind": cs.Kind, "workflow_id": cs.WorkflowID, "result": "updated"}
	text := fmt.Sprintf("connector %s updated (workflow %s; applied between ticks or batches)\n", cs.Name, cs.WorkflowID)
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
			line := fmt.Sprintf("backfill %s: %d batches, %d objects, %d dead-lettered so far (last key %s)\n", id, p.Batches, p.Objects, p.DeadLettered, kinds.Dash(p.LastKey))
			if line != last {
				fmt.Fprint(g.stderr, line)
				last = line
			}
		}
	}
}

// backfillProgressEvery is how often backfill --wait reports progress.
const backfillProgressEvery = 2 * time.Second

// refuseOtherKind refuses to apply a spec whose name runs already under
// another kind, naming it: one name, one connector.
func (g *globals) refuseOtherKind(cmd *cobra.Command, c client.Client, cs applied) error {
	found, err := g.kinds.Find(cmd.Context(), c, cs.Name)
	switch {
	case errors.Is(err, kinds.ErrNotFound):
		return nil
	case err != nil:
		return err
	case found.Kind != nil && found.Kind.Name != cs.kind.Name:
		return fmt.Errorf("apply: connector %s already runs as a %s connector (workflow %s); a name is one connector: delete it first (starter delete %s) or give this %s spec another name",
			cs.Name, found.Kind.Name, found.WorkflowID, cs.Name, cs.Kind)
	}
	return nil
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

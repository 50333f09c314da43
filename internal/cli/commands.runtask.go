package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

type runTaskFlags struct {
	template, connector, batch string
	vars, inputs               map[string]string
	queueTimeout, execTimeout  time.Duration
	maxAttempts                int
	noWait                     bool
}

func newRunTaskCommand(g *globals) *cobra.Command {
	f := &runTaskFlags{}
	cmd := &cobra.Command{
		Use:   "run-task",
		Short: "Run one Bacalhau task through the durable RunTask workflow",
		Long: `Run one Bacalhau task through the durable RunTask workflow: it takes a lease
from the shared in-flight budget, submits the job idempotently, awaits it and
reads its results. The template is checked before the workflow starts.`,
		Example: `  starter run-task --template examples/jobs/logsummary.yaml \
      --var MODULES_URL=http://127.0.0.1:8480 \
      --input /inputs/access.log=http://127.0.0.1:8480/data/access.log`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runTask(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.template, "template", "", "Bacalhau job YAML to run (required)")
	fl.StringToStringVar(&f.vars, "var", nil, "template variable NAME=VALUE for {{.NAME}} placeholders (repeatable)")
	fl.StringToStringVar(&f.inputs, "input", nil, "input TARGET=URL: the task sees URL's content at TARGET (repeatable)")
	fl.StringVar(&f.connector, "connector", "adhoc", "connector name the task is labelled with")
	fl.StringVar(&f.batch, "batch", "", "batch ID (default: a hash of template and inputs, so a re-run of the same command is the same batch)")
	fl.DurationVar(&f.queueTimeout, "queue-timeout", 0, "how long the job may wait for a node (default: template's, else 10m)")
	fl.DurationVar(&f.execTimeout, "execution-timeout", 0, "how long the task may run (default: template's, else 5m)")
	fl.IntVar(&f.maxAttempts, "max-attempts", 3, "how often the task runs at most")
	fl.BoolVar(&f.noWait, "no-wait", false, "start the workflow and return without waiting for its result")
	_ = cmd.MarkFlagRequired("template")
	return cmd
}

func runTask(cmd *cobra.Command, g *globals, f *runTaskFlags) error {
	raw, err := os.ReadFile(f.template)
	if err != nil {
		return fmt.Errorf("--template: %w", err)
	}
	text, err := tasktemplate.Render(string(raw), f.vars)
	if err != nil {
		return fmt.Errorf("--template %s: %w (pass --var NAME=VALUE)", f.template, err)
	}
	in := workflows.RunTaskInput{
		Connector: f.connector, BatchID: f.batch, Template: text,
		QueueTimeout: f.queueTimeout, ExecutionTimeout: f.execTimeout,
		Retry:  workflows.TaskRetryPolicy{MaxAttempts: f.maxAttempts},
		Budget: workflows.BudgetRef{AskBySignal: true},
		// A one-off run prints its task's output: the user's own command,
		// not a connector's records.
		Output: true,
	}
	targets := make([]string, 0, len(f.inputs))
	for target := range f.inputs {
		targets = append(targets, target)
	}
	sort.Strings(targets)
	for _, target := range targets {
		in.Inputs = append(in.Inputs, tasktemplate.Input{Target: target, URL: f.inputs[target]})
	}
	if in.BatchID == "" {
		h := sha256.New()
		h.Write([]byte(text))
		for _, in := range in.Inputs {
			h.Write([]byte("\x00" + in.Target + "=" + in.URL))
		}
		in.BatchID = hex.EncodeToString(h.Sum(nil))[:16]
	}
	// Check everything before a workflow starts.
	if _, err := tasktemplate.Build(text, tasktemplate.Batch{
		Connector: in.Connector, ID: in.BatchID, Attempt: 1, Inputs: in.Inputs,
		QueueTimeout: in.QueueTimeout, ExecutionTimeout: in.ExecutionTimeout,
	}); err != nil {
		return fmt.Errorf("--template %s: %w", f.template, err)
	}

	c, err := g.dial(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	id := "runtask-" + tasktemplate.LabelValue(in.Connector) + "-" + in.BatchID
	run, err := c.ExecuteWorkflow(cmd.Context(), client.StartWorkflowOptions{ID: id, TaskQueue: g.taskQueue}, workflows.RunTaskWorkflowType, in)
	if err != nil {
		return fmt.Errorf("starting workflow %s: %w", id, err)
	}
	if f.noWait {
		return g.print(map[string]string{"workflow_id": run.GetID(), "run_id": run.GetRunID()},
			fmt.Sprintf("started workflow %s (run %s)\n", run.GetID(), run.GetRunID()))
	}
	var res workflows.RunTaskResult
	if err := run.Get(cmd.Context(), &res); err != nil {
		return fmt.Errorf("workflow %s: %w", id, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "workflow %s\njob       %s (attempt %d, exit %d)\nresults   %s\n", id, res.JobID, res.Attempts, res.ExitCode, res.ResultURL)
	for _, o := range res.Outputs {
		fmt.Fprintf(&b, "output    %s (%d bytes)\n", o.Path, o.Size)
	}
	fmt.Fprintf(&b, "stdout:\n%s\n", strings.TrimRight(res.StdoutTail, "\n"))
	return g.print(res, b.String())
}

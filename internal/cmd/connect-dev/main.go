// Command connect-dev is `make dev`: it brings up the embedded local stack
// (Temporal dev server with UI, an in-process Bacalhau node, the module
// server), starts a worker, runs the sample log task once through the RunTask
// workflow, prints its result and the Temporal UI URL, and stays up until
// Ctrl-C. Each part logs to a file under the run folder (default run/).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/devstack"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/internal/workerapp"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "connect-dev:", err)
		os.Exit(1)
	}
}

type options struct {
	runDir                             string
	temporalPort, uiPort, bacalhauPort int
	modulesPort                        int
	once                               bool
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("connect-dev", flag.ContinueOnError)
	fs.StringVar(&o.runDir, "run-dir", "run", "folder for logs and state")
	fs.IntVar(&o.temporalPort, "temporal-port", 7233, "Temporal frontend port (0: free port)")
	fs.IntVar(&o.uiPort, "ui-port", 8233, "Temporal UI port (0: free port)")
	fs.IntVar(&o.bacalhauPort, "bacalhau-port", 1234, "Bacalhau API port (0: free port)")
	fs.IntVar(&o.modulesPort, "modules-port", 8480, "module server port (0: free port)")
	fs.BoolVar(&o.once, "once", false, "stop after the sample task instead of waiting for Ctrl-C")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := filepath.Abs(".")
	if err != nil {
		return err
	}
	runDir, err := filepath.Abs(o.runDir)
	if err != nil {
		return err
	}
	logs := filepath.Join(runDir, "logs", time.Now().Format("20060102-150405"))
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	logFile := func(name string) (*os.File, error) { return os.Create(filepath.Join(logs, name)) }
	fmt.Fprintf(out, "run folder %s (logs in %s)\n", runDir, logs)

	step := func(what string, f func() error) error {
		fmt.Fprintf(out, "%s… ", what)
		start := time.Now()
		if err := f(); err != nil {
			fmt.Fprintln(out, "failed")
			return err
		}
		fmt.Fprintf(out, "ready in %.1f s\n", time.Since(start).Seconds())
		return nil
	}

	modulesDir := filepath.Join(runDir, "modules")
	if err := step("building the sample WASM task", func() error {
		return devstack.BuildWASM(ctx, filepath.Join(root, "examples/tasks/logsummary"), filepath.Join(modulesDir, "logsummary.wasm"))
	}); err != nil {
		return err
	}
	sample, err := os.ReadFile(filepath.Join(root, "examples/data/access.log"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(modulesDir, "data"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(modulesDir, "data/access.log"), sample, 0o644); err != nil {
		return err
	}

	var modules *devstack.ModuleServer
	if err := step("starting the module server", func() error {
		mlog, err := logFile("modules.log")
		if err != nil {
			return err
		}
		modules, err = devstack.StartModuleServer(modulesDir, o.modulesPort, mlog)
		return err
	}); err != nil {
		return err
	}
	defer func() { _ = modules.Stop() }()

	var temporal *devstack.Temporal
	if err := step("starting Temporal", func() error {
		tlog, err := logFile("temporal.log")
		if err != nil {
			return err
		}
		temporal, err = devstack.StartTemporal(ctx, devstack.TemporalOptions{
			BinPath: filepath.Join(root, "bin/temporal"), Port: o.temporalPort, UIPort: o.uiPort,
			DBFile: filepath.Join(runDir, "temporal.db"), Log: tlog,
		})
		return err
	}); err != nil {
		return err
	}
	defer func() {
		fmt.Fprint(out, "stopping Temporal… ")
		_ = temporal.Stop()
		fmt.Fprintln(out, "done")
	}()

	var bacalhau *devstack.Bacalhau
	if err := step("starting Bacalhau", func() error {
		blog, err := logFile("bacalhau.log")
		if err != nil {
			return err
		}
		bacalhau, err = devstack.StartBacalhau(ctx, devstack.BacalhauOptions{
			DataDir: filepath.Join(runDir, "bacalhau"), APIPort: o.bacalhauPort, Log: blog, LogLevel: "info",
		})
		return err
	}); err != nil {
		return err
	}
	defer func() {
		fmt.Fprint(out, "stopping Bacalhau… ")
		bacalhau.Stop()
		fmt.Fprintln(out, "done")
	}()

	wlog, err := logFile("worker.log")
	if err != nil {
		return err
	}
	c, err := client.DialContext(ctx, client.Options{
		HostPort: temporal.HostPort(),
		Logger:   sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(wlog, nil))),
	})
	if err != nil {
		return fmt.Errorf("connecting to Temporal: %w", err)
	}
	defer c.Close()
	w := workerapp.New(c, workerapp.Options{BacalhauAddress: bacalhau.Address()})
	if err := step("starting the worker", w.Start); err != nil {
		return err
	}
	defer w.Stop()

	if err := runSample(ctx, out, c, root, modules); err != nil {
		return err
	}

	fmt.Fprintf(out, `
Temporal UI     %s
Temporal        %s   (temporal workflow list --address %s)
Bacalhau API    %s
Modules         %s
Task queue      %s

`, temporal.UIURL(), temporal.HostPort(), temporal.HostPort(), bacalhau.Address(), modules.URL(), workflows.TaskQueue)
	if o.once {
		return nil
	}
	fmt.Fprintln(out, "up; press Ctrl-C to stop")
	<-ctx.Done()
	fmt.Fprintln(out)
	return nil
}

func runSample(ctx context.Context, out io.Writer, c client.Client, root string, modules *devstack.ModuleServer) error {
	raw, err := os.ReadFile(filepath.Join(root, "examples/jobs/logsummary.yaml"))
	if err != nil {
		return err
	}
	text, err := tasktemplate.Render(string(raw), map[string]string{"MODULES_URL": modules.URL()})
	if err != nil {
		return err
	}
	in := workflows.RunTaskInput{
		Connector: "dev-sample",
		BatchID:   time.Now().UTC().Format("20060102T150405Z"),
		Template:  text,
		Inputs:    []tasktemplate.Input{{Target: "/inputs/access.log", URL: modules.URL() + "/data/access.log"}},
	}
	id := "runtask-dev-sample-" + in.BatchID
	var res workflows.RunTaskResult
	if err := func() error {
		fmt.Fprintf(out, "running the sample task (workflow %s)… ", id)
		start := time.Now()
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue}, workflows.RunTaskWorkflowType, in)
		if err != nil {
			return err
		}
		if err := run.Get(ctx, &res); err != nil {
			fmt.Fprintln(out, "failed")
			return err
		}
		fmt.Fprintf(out, "done in %.1f s\n", time.Since(start).Seconds())
		return nil
	}(); err != nil {
		return fmt.Errorf("sample task: %w", err)
	}
	files, err := activities.FetchPublished(ctx, nil, res.ResultURL, 1<<20)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "job %s, exit %d, outputs %s\nsummary.json: %s\n", res.JobID, res.ExitCode, res.ResultURL, files["outputs/summary.json"])
	return nil
}

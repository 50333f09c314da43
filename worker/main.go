// Command worker runs the bacalhau-connect Temporal worker: every connector
// workflow and every activity, polling one task queue.
//
// Configuration comes from flags, each with an environment variable fallback:
//
//	-temporal-address   TEMPORAL_ADDRESS    Temporal frontend (default 127.0.0.1:7233)
//	-namespace          TEMPORAL_NAMESPACE  Temporal namespace (default "default")
//	-task-queue         CONNECT_TASK_QUEUE  task queue (default "bacalhau-connect")
//	-bacalhau-host      BACALHAU_API_HOST   Bacalhau API host (default 127.0.0.1)
//	-bacalhau-port      BACALHAU_API_PORT   Bacalhau API port (default 1234)
//	-max-activities     CONNECT_MAX_ACTIVITIES  activities at once in this worker (default: SDK's)
//
// The worker stops gracefully on SIGINT or SIGTERM: running activities get
// the SDK's stop timeout and Bacalhau jobs keep running for the next worker.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/bacalhau-connect/bacalhau-connect/internal/workerapp"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	address := fs.String("temporal-address", env("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port [TEMPORAL_ADDRESS]")
	namespace := fs.String("namespace", env("TEMPORAL_NAMESPACE", "default"), "Temporal namespace [TEMPORAL_NAMESPACE]")
	queue := fs.String("task-queue", env("CONNECT_TASK_QUEUE", workflows.TaskQueue), "task queue [CONNECT_TASK_QUEUE]")
	bacHost := fs.String("bacalhau-host", env("BACALHAU_API_HOST", "127.0.0.1"), "Bacalhau API host [BACALHAU_API_HOST]")
	bacPort := fs.String("bacalhau-port", env("BACALHAU_API_PORT", "1234"), "Bacalhau API port [BACALHAU_API_PORT]")
	maxActs := fs.String("max-activities", env("CONNECT_MAX_ACTIVITIES", "0"), "activities at once in this worker, 0 for the SDK default [CONNECT_MAX_ACTIVITIES]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	maxActivities, err := strconv.Atoi(*maxActs)
	if err != nil || maxActivities < 0 {
		return fmt.Errorf("-max-activities: %q is not a number >= 0", *maxActs)
	}
	if _, err := strconv.Atoi(*bacPort); err != nil {
		return fmt.Errorf("-bacalhau-port: %q is not a port number", *bacPort)
	}

	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  *address,
		Namespace: *namespace,
		Logger:    sdklog.NewStructuredLogger(logger),
	})
	if err != nil {
		return fmt.Errorf("connecting to Temporal at %s: %w", *address, err)
	}
	defer c.Close()

	w := workerapp.New(c, workerapp.Options{
		TaskQueue:               *queue,
		BacalhauAddress:         "http://" + *bacHost + ":" + *bacPort,
		MaxConcurrentActivities: maxActivities,
	})
	logger.Info("worker starting", "temporal", *address, "namespace", *namespace, "task_queue", *queue, "bacalhau", *bacHost+":"+*bacPort)
	interrupt := make(chan interface{})
	go func() {
		<-ctx.Done()
		close(interrupt)
	}()
	if err := w.Run(interrupt); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	logger.Info("worker stopped")
	return nil
}

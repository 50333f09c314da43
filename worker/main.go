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
//	-gateway-listen     CONNECT_GATEWAY_LISTEN  input gateway address (default 127.0.0.1:8470; "off" to disable)
//	-gateway-url        CONNECT_GATEWAY_URL     public base URL compute nodes reach the gateway at
//	                                            (default http://<gateway-listen>)
//	                    CONNECT_GATEWAY_SECRET  HMAC secret for capability URLs, at least 32 bytes; every
//	                                            replica needs the same one (default: random, one replica only)
//	-metrics-listen     CONNECT_METRICS_LISTEN  Prometheus /metrics, /healthz and /readyz address
//	                                            (default 127.0.0.1:9464; "off" to disable)
//
// The input gateway signs its S3 requests with the worker's own AWS
// credentials from the standard chain (AWS_ACCESS_KEY_ID…, shared config,
// instance roles); no key ever enters a workflow or a job.
//
// `worker healthcheck` exits 0 when the worker serving metrics on
// CONNECT_METRICS_LISTEN is ready (for container health checks).
//
// The worker stops gracefully on SIGINT or SIGTERM: running activities get
// the SDK's stop timeout and Bacalhau jobs keep running for the next worker.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
	"github.com/bacalhau-connect/bacalhau-connect/internal/metrics"
	"github.com/bacalhau-connect/bacalhau-connect/internal/workerapp"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		// For container health checks (the image has no shell or curl).
		if err := healthcheck(ctx, env("CONNECT_METRICS_LISTEN", "127.0.0.1:9464")); err != nil {
			fmt.Fprintln(os.Stderr, "worker healthcheck:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

// startGateway binds and serves the input gateway.
func startGateway(listen, publicURL, secret string, logger *slog.Logger) (*inputgateway.Server, *inputgateway.Gateway, error) {
	key := []byte(secret)
	if secret == "" {
		key = make([]byte, inputgateway.MinSecretBytes)
		if _, err := rand.Read(key); err != nil {
			return nil, nil, err
		}
		logger.Warn("CONNECT_GATEWAY_SECRET not set: using a random one; other worker replicas cannot answer this worker's URLs")
	}
	srv, err := inputgateway.Listen(listen)
	if err != nil {
		return nil, nil, fmt.Errorf("-gateway-listen: %w", err)
	}
	if publicURL == "" {
		publicURL = srv.URL()
	}
	gw, err := inputgateway.New(inputgateway.Options{Secret: key, PublicURL: publicURL})
	if err != nil {
		_ = srv.Stop()
		return nil, nil, fmt.Errorf("input gateway (CONNECT_GATEWAY_SECRET, -gateway-url): %w", err)
	}
	srv.Serve(gw)
	logger.Info("input gateway serving", "listen", srv.URL(), "public_url", publicURL)
	return srv, gw, nil
}

// healthcheck asks the worker serving metrics on listen whether it is
// ready (GET /readyz).
func healthcheck(ctx context.Context, listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("CONNECT_METRICS_LISTEN %q: %w", listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
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
	gwListen := fs.String("gateway-listen", env("CONNECT_GATEWAY_LISTEN", "127.0.0.1:8470"), `input gateway address, "off" to disable [CONNECT_GATEWAY_LISTEN]`)
	metricsListen := fs.String("metrics-listen", env("CONNECT_METRICS_LISTEN", "127.0.0.1:9464"), `Prometheus /metrics, /healthz and /readyz address, "off" to disable [CONNECT_METRICS_LISTEN]`)
	gwURL := fs.String("gateway-url", env("CONNECT_GATEWAY_URL", ""), "public base URL compute nodes reach the gateway at (default http://<gateway-listen>) [CONNECT_GATEWAY_URL]")
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
	copts := client.Options{
		HostPort:  *address,
		Namespace: *namespace,
		Logger:    sdklog.NewStructuredLogger(logger),
	}
	var metricsSrv *metrics.Server
	if *metricsListen != "off" {
		if metricsSrv, err = metrics.Listen(*metricsListen); err != nil {
			return fmt.Errorf("-metrics-listen: %w", err)
		}
		defer func() { _ = metricsSrv.Close(context.Background()) }()
		copts.MetricsHandler = metricsSrv.Handler()
		logger.Info("metrics serving", "listen", "http://"+metricsSrv.Addr()+"/metrics")
	}
	c, err := client.DialContext(ctx, copts)
	if err != nil {
		return fmt.Errorf("connecting to Temporal at %s: %w", *address, err)
	}
	defer c.Close()

	opts := workerapp.Options{
		TaskQueue:               *queue,
		BacalhauAddress:         "http://" + *bacHost + ":" + *bacPort,
		MaxConcurrentActivities: maxActivities,
	}
	if *gwListen != "off" {
		srv, gw, err := startGateway(*gwListen, *gwURL, os.Getenv("CONNECT_GATEWAY_SECRET"), logger)
		if err != nil {
			return err
		}
		defer func() { _ = srv.Stop() }()
		opts.Gateway = gw
	}
	w := workerapp.New(c, opts)
	logger.Info("worker starting", "temporal", *address, "namespace", *namespace, "task_queue", *queue, "bacalhau", *bacHost+":"+*bacPort)
	if err := w.Start(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	if metricsSrv != nil {
		metricsSrv.SetReady(true)
	}
	<-ctx.Done()
	if metricsSrv != nil {
		metricsSrv.SetReady(false)
	}
	w.Stop()
	logger.Info("worker stopped")
	return nil
}

// Package workercmd is the worker command: its flags, its subcommands
// (healthcheck, codec-server) and its run, for worker/main.go and for
// workers built with extra kinds (sdk.RunWorker). worker/main.go's doc
// comment lists the flags.
package workercmd

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/bacalhau-connect/bacalhau-connect/internal/codec"
	"github.com/bacalhau-connect/bacalhau-connect/internal/conn"
	"github.com/bacalhau-connect/bacalhau-connect/internal/inputgateway"
	"github.com/bacalhau-connect/bacalhau-connect/internal/kinds"
	"github.com/bacalhau-connect/bacalhau-connect/internal/metrics"
	"github.com/bacalhau-connect/bacalhau-connect/internal/workerapp"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// Main runs the worker command with args (os.Args[1:]): `healthcheck`,
// `codec-server …`, or the worker itself, serving the kinds of reg, until
// ctx ends.
func Main(ctx context.Context, args []string, stderr io.Writer, reg kinds.Registry) error {
	if len(args) > 0 && args[0] == "healthcheck" {
		// For container health checks (the image has no shell or curl).
		if err := healthcheck(ctx, conn.EnvOr("CONNECT_METRICS_LISTEN", "127.0.0.1:9464")); err != nil {
			return fmt.Errorf("worker healthcheck: %w", err)
		}
		return nil
	}
	if len(args) > 0 && args[0] == "codec-server" {
		if err := codecServer(ctx, args[1:], stderr); err != nil {
			return fmt.Errorf("worker codec-server: %w", err)
		}
		return nil
	}
	if err := run(ctx, args, stderr, reg); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
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

// codecServer serves the payload codec's /encode and /decode for the
// Temporal UI (its codec endpoint setting) and CLI (--codec-endpoint).
func codecServer(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker codec-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", conn.EnvOr("CONNECT_CODEC_LISTEN", "127.0.0.1:8089"), "address to serve on [CONNECT_CODEC_LISTEN]")
	keyFile := fs.String("codec-key-file", conn.EnvOr("CONNECT_CODEC_KEY_FILE", ""), "file holding the AES-256 key the workers use [CONNECT_CODEC_KEY_FILE]")
	origins := fs.String("allow-origin", conn.EnvOr("CONNECT_CODEC_ALLOW_ORIGIN", "http://127.0.0.1:8233,http://localhost:8233"), "comma-separated web origins of the Temporal UI [CONNECT_CODEC_ALLOW_ORIGIN]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *keyFile == "" {
		return errors.New("-codec-key-file: required (the file holding the workers' codec key)")
	}
	c, err := codec.LoadKeyFile(*keyFile)
	if err != nil {
		return err
	}
	token := os.Getenv("CONNECT_CODEC_AUTH_TOKEN")
	srv, err := codec.Listen(*listen, c, codec.ServerOptions{AllowOrigins: strings.Split(*origins, ","), AuthToken: token})
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	logger.Info("codec server serving", "listen", srv.URL, "key_id", c.KeyID(), "token_required", token != "")
	return srv.Serve(ctx)
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

func run(ctx context.Context, args []string, stderr io.Writer, reg kinds.Registry) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var tc conn.Temporal
	tc.Register(fs, "default")
	var bc conn.Bacalhau
	bc.Register(fs)
	queue := fs.String("task-queue", conn.EnvOr("CONNECT_TASK_QUEUE", workflows.TaskQueue), "task queue [CONNECT_TASK_QUEUE]")
	maxActs := fs.String("max-activities", conn.EnvOr("CONNECT_MAX_ACTIVITIES", "0"), "activities at once in this worker, 0 for the SDK default [CONNECT_MAX_ACTIVITIES]")
	gwListen := fs.String("gateway-listen", conn.EnvOr("CONNECT_GATEWAY_LISTEN", "127.0.0.1:8470"), `input gateway address, "off" to disable [CONNECT_GATEWAY_LISTEN]`)
	metricsListen := fs.String("metrics-listen", conn.EnvOr("CONNECT_METRICS_LISTEN", "127.0.0.1:9464"), `Prometheus /metrics, /healthz and /readyz address, "off" to disable [CONNECT_METRICS_LISTEN]`)
	gwURL := fs.String("gateway-url", conn.EnvOr("CONNECT_GATEWAY_URL", ""), "public base URL compute nodes reach the gateway at (default http://<gateway-listen>) [CONNECT_GATEWAY_URL]")
	if err := fs.Parse(args); err != nil {
		return err
	}
	maxActivities, err := strconv.Atoi(*maxActs)
	if err != nil || maxActivities < 0 {
		return fmt.Errorf("-max-activities: %q is not a number >= 0", *maxActs)
	}
	bacAddress, bacOptions, err := bc.Client()
	if err != nil {
		return err
	}

	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	copts, err := tc.ClientOptions(client.Options{Logger: sdklog.NewStructuredLogger(logger)})
	if err != nil {
		return err
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
		return fmt.Errorf("connecting to Temporal at %s: %w", tc.Address, err)
	}
	defer c.Close()

	opts := workerapp.Options{
		TaskQueue:               *queue,
		BacalhauAddress:         bacAddress,
		BacalhauOptions:         bacOptions,
		MaxConcurrentActivities: maxActivities,
		Kinds:                   reg,
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
	logger.Info("worker starting", "temporal", tc.Address, "namespace", tc.Namespace, "task_queue", *queue, "bacalhau", bacAddress,
		"temporal_tls", copts.ConnectionOptions.TLS != nil, "payload_codec", tc.CodecKeyFile != "")
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

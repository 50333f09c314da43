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
// Secured clusters (names as the temporal and bacalhau CLIs use them):
//
//	-tls                TEMPORAL_TLS                      TLS to Temporal (default: on when any TLS setting or API key is set)
//	-tls-cert-path      TEMPORAL_TLS_CLIENT_CERT_PATH     mTLS client certificate
//	-tls-key-path       TEMPORAL_TLS_CLIENT_KEY_PATH      mTLS client key
//	-tls-ca-path        TEMPORAL_TLS_SERVER_CA_CERT_PATH  Temporal server CA (default: system roots)
//	-tls-server-name    TEMPORAL_TLS_SERVER_NAME          name to verify the server certificate against
//	-api-key-file       TEMPORAL_API_KEY_FILE             Temporal API key file (else TEMPORAL_API_KEY)
//	-codec-key-file     CONNECT_CODEC_KEY_FILE            AES-256 key: encrypt every payload in history
//	-bacalhau-tls       BACALHAU_API_TLS_USETLS           TLS to the Bacalhau API
//	-bacalhau-ca-cert   BACALHAU_API_TLS_CACERT           Bacalhau API CA (default: system roots)
//	-bacalhau-api-key-file BACALHAU_API_KEY_FILE          Bacalhau API key file (else BACALHAU_API_KEY)
//
// `worker codec-server` serves that key's /encode and /decode for the
// Temporal UI and CLI (-listen, CONNECT_CODEC_LISTEN, default
// 127.0.0.1:8089; -allow-origin, the UI's origin; CONNECT_CODEC_AUTH_TOKEN,
// when set, is required as a bearer token).
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
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/bacalhau-connect/bacalhau-connect/internal/codec"
	"github.com/bacalhau-connect/bacalhau-connect/internal/conn"
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
		if err := healthcheck(ctx, conn.EnvOr("CONNECT_METRICS_LISTEN", "127.0.0.1:9464")); err != nil {
			fmt.Fprintln(os.Stderr, "worker healthcheck:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "codec-server" {
		if err := codecServer(ctx, os.Args[2:], os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "worker codec-server:", err)
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

func run(ctx context.Context, args []string, stderr io.Writer) error {
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

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
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/bacalhau-connect/bacalhau-connect/internal/kinds"
	"github.com/bacalhau-connect/bacalhau-connect/internal/workercmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := workercmd.Main(ctx, os.Args[1:], os.Stderr, kinds.All()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

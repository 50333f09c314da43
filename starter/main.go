// Command starter is the operator's CLI for bacalhau-connect: it validates
// what it is given before anything starts, then starts or steers workflows.
//
//	starter run-task --template examples/jobs/logsummary.yaml --var MODULES_URL=http://127.0.0.1:8480 \
//	    --input /inputs/access.log=http://example.com/access.log
//	starter budget status
//	starter budget resize 8
//
// Global flags: --temporal-address [TEMPORAL_ADDRESS], --namespace
// [TEMPORAL_NAMESPACE], --task-queue [CONNECT_TASK_QUEUE], -o text|json|yaml;
// for a secured cluster --tls, --tls-cert-path, --tls-key-path,
// --tls-ca-path, --tls-server-name, --api-key-file (or TEMPORAL_API_KEY),
// and --codec-key-file [CONNECT_CODEC_KEY_FILE] when the workers encrypt
// history (docs/configuration.md lists them all).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/bacalhau-connect/bacalhau-connect/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := cli.NewRootCommand(os.Stdout, os.Stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "starter:", err)
		os.Exit(1)
	}
}

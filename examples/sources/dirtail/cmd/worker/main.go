// Command worker is bacalhau-connect's worker with the dirtail kind: the
// built-in kinds' flags and environment (docs/configuration.md), and
// dirtail connectors served too.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/bacalhau-connect/bacalhau-connect/examples/sources/dirtail"
	"github.com/bacalhau-connect/bacalhau-connect/sdk"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := sdk.RunWorker(ctx, os.Args[1:], os.Stderr, dirtail.Kind()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// Command starter is bacalhau-connect's starter that knows the dirtail
// kind: `starter apply -f tail.yaml` checks a dirtail spec and starts it,
// and every other verb serves dirtail connectors.
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
	if err := sdk.RunStarter(ctx, os.Args[1:], os.Stdout, os.Stderr, dirtail.Kind()); err != nil {
		fmt.Fprintln(os.Stderr, "starter:", err)
		os.Exit(1)
	}
}

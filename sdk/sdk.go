// Package sdk builds bacalhau-connect's two binaries with connector kinds
// from other modules, as Temporal users build their own workers: a module
// that implements a source (package source) writes a worker main and a
// starter main of a few lines each, and gets every verb, status, metric
// and guarantee the built-in kinds of its family have. No fork, no edit of this
// repository.
//
// # A worker with an extra kind
//
//	func main() {
//		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//		defer stop()
//		if err := sdk.RunWorker(ctx, os.Args[1:], os.Stderr, dirtail.Kind()); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//	}
//
// It takes the flags and environment of the worker binary
// (docs/configuration.md) and serves the built-in kinds and the extra
// ones. Every worker of a task queue must be built with the same kinds.
//
// # A starter that knows it
//
// RunStarter is the starter binary with the extra kinds: `apply` decodes
// and checks their spec sections (problems at source.<kind>.<field>),
// `list`, `describe`, `pause`, `resume`, `reset` and `delete` serve their
// connectors.
//
// # What a kind is
//
// A source.StreamKind or a source.QueueKind: a name (the spec's kind and
// source section), a configuration type the section decodes into and
// checks itself, and an opener that turns the configuration into a
// source.Stream or a source.Queue in the worker.
// examples/sources/dirtail is a complete one in a module of its own;
// docs/write-a-source.md walks through it.
package sdk

import (
	"context"
	"io"

	"github.com/bacalhau-connect/bacalhau-connect/internal/cli"
	"github.com/bacalhau-connect/bacalhau-connect/internal/kinds"
	"github.com/bacalhau-connect/bacalhau-connect/internal/workercmd"
	"github.com/bacalhau-connect/bacalhau-connect/source"
)

// RunWorker runs the worker command with args (its flags, or the
// healthcheck and codec-server subcommands), serving the built-in kinds
// and extra, until ctx ends. A kind whose name, workflow types or ID
// prefix another kind has is an error.
func RunWorker(ctx context.Context, args []string, stderr io.Writer, extra ...source.Kind) error {
	reg, err := kinds.With(extra...)
	if err != nil {
		return err
	}
	return workercmd.Main(ctx, args, stderr, reg)
}

// RunStarter runs the starter command with args (a verb and its flags),
// knowing the built-in kinds and extra.
func RunStarter(ctx context.Context, args []string, stdout, stderr io.Writer, extra ...source.Kind) error {
	reg, err := kinds.With(extra...)
	if err != nil {
		return err
	}
	cmd := cli.NewRootCommand(stdout, stderr, cli.WithKinds(reg))
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"google.golang.org/grpc"
	"gopkg.in/yaml.v3"

	"github.com/bacalhau-connect/bacalhau-connect/internal/conn"
	"github.com/bacalhau-connect/bacalhau-connect/internal/kinds"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// globals are the flags every command shares.
type globals struct {
	temporal          conn.Temporal
	taskQueue, output string
	stdout, stderr    io.Writer
	// interceptors see every Temporal call the command makes.
	interceptors []grpc.UnaryClientInterceptor
	// kinds are the connector kinds the starter knows.
	kinds kinds.Registry
}

// Option configures the starter CLI beyond its flags.
type Option func(*globals)

// WithInterceptor adds a gRPC interceptor to every Temporal connection the
// commands make: a caller such as a test can count or trace their calls.
func WithInterceptor(i grpc.UnaryClientInterceptor) Option {
	return func(g *globals) { g.interceptors = append(g.interceptors, i) }
}

// WithKinds sets the connector kinds the starter knows (default
// kinds.All; kinds.With adds source stream kinds of other modules).
func WithKinds(r kinds.Registry) Option {
	return func(g *globals) { g.kinds = r }
}

// NewRootCommand returns the starter CLI writing to stdout and stderr.
func NewRootCommand(stdout, stderr io.Writer, opts ...Option) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr, kinds: kinds.All()}
	for _, o := range opts {
		o(g)
	}
	root := &cobra.Command{
		Use:           "starter",
		Short:         "Start and steer bacalhau-connect workflows",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			switch g.output {
			case "text", "json", "yaml":
			default:
				return fmt.Errorf("--output: %q is not text, json or yaml", g.output)
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	g.temporal.Register(pf, "default")
	pf.StringVar(&g.taskQueue, "task-queue", conn.EnvOr("CONNECT_TASK_QUEUE", workflows.TaskQueue), "task queue of the workers [CONNECT_TASK_QUEUE]")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text, json or yaml")
	root.AddCommand(newRunTaskCommand(g), newBudgetCommand(g), newSchemaCommand(g))
	root.AddCommand(newConnectorCommands(g)...)
	return root
}

func (g *globals) dial(cmd *cobra.Command) (client.Client, error) {
	opts, err := g.temporal.ClientOptions(client.Options{Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return nil, err
	}
	if len(g.interceptors) > 0 {
		opts.ConnectionOptions.DialOptions = append(opts.ConnectionOptions.DialOptions, grpc.WithChainUnaryInterceptor(g.interceptors...))
	}
	c, err := client.DialContext(cmd.Context(), opts)
	if err != nil {
		return nil, fmt.Errorf("connecting to Temporal at %s: %w", g.temporal.Address, err)
	}
	return c, nil
}

// print writes v as JSON with -o json, as YAML (the same field names)
// with -o yaml, else the text.
func (g *globals) print(v any, text string) error {
	switch g.output {
	case "json":
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		var generic any
		if err := json.Unmarshal(raw, &generic); err != nil {
			return err
		}
		enc := yaml.NewEncoder(g.stdout)
		enc.SetIndent(2)
		if err := enc.Encode(generic); err != nil {
			return err
		}
		return enc.Close()
	}
	_, err := fmt.Fprint(g.stdout, text)
	return err
}

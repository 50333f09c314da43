package cli

import (
	"github.com/spf13/cobra"

	"github.com/bacalhau-connect/bacalhau-connect/internal/spec"
)

func newSchemaCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of connector specs (for editors and CI checks)",
		Long: `Print the JSON Schema (draft 2020-12) of connector specs, generated from the
spec types. Editors with a YAML language server complete and check a spec
that starts with

  # yaml-language-server: $schema=<path or URL of this schema>

as the examples in examples/connectors/ do. The schema checks shapes, names,
enums and ranges; apply checks the rest (cron expressions, templates, values
that depend on each other) before anything starts.`,
		Example: `  starter schema > connector.schema.json`,
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := g.stdout.Write(spec.Schema())
			return err
		},
	}
}

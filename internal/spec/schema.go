package spec

import _ "embed"

// SchemaFile is the JSON Schema of connector specs, committed beside this
// package's source and generated from the Spec type (go test
// ./internal/spec -run TestSchemaIsCurrent with UPDATE_SCHEMA=1, or make
// schema). Editors that read `# yaml-language-server: $schema=...` lines
// (the examples have one) complete and check fields with it.
const SchemaFile = "connector.schema.json"

//go:embed connector.schema.json
var schema []byte

// Schema returns the JSON Schema of connector specs (`starter schema`
// prints it).
func Schema() []byte { return append([]byte(nil), schema...) }

// Package spec decodes, defaults and validates connector specs: the YAML
// files operators apply with `starter apply -f`.
//
// Decoding is strict (unknown fields are errors, with their line), and
// validation reports every problem at once, each naming its YAML path and
// the fix ("source.s3.bucket: required: name the bucket to scan"). Nothing
// starts until a spec is valid. Cross-field rules (start_after vs
// start_time, max_interval vs initial_interval) are checked here, not
// discovered mid-run.
//
// A valid spec resolves into the workflow's configuration (Cron), with the
// task template read, rendered and checked. Secrets never belong in a spec:
// the worker reads credentials from its own environment.
package spec

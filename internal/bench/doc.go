// Package bench holds bacalhau-connect's benchmarks (`make bench`). They run
// on the real local stack and write their result tables to BENCHMARKS.md at
// the repository root. Targets live here, never in timed tests.
package bench

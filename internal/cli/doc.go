// Package cli is the starter's command tree (cobra), kept out of package main
// so that tests can run it in-process with their own stdout and stderr.
// Commands live in files commands.<noun>.go; every command checks its input
// before it dials Temporal, and prints text or, with -o json, JSON.
package cli

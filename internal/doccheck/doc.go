// Package doccheck holds tests that keep the documentation honest: every relative link of README.md and docs/*.md resolves.
package doccheck

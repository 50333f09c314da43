package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bacalhau-connect/bacalhau-connect/internal/cli"
)

// summaryRow is the part of a `starter list -o json` row the summary shows.
type summaryRow struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	State     string `json:"state"`
	Processed int64  `json:"processed"`
	Lag       int64  `json:"lag"`
	LastError string `json:"last_error"`
}

// listConnectors runs the starter's list in-process against the stack
// (connection flags in conn).
func listConnectors(ctx context.Context, conn []string) ([]summaryRow, error) {
	var out, errOut bytes.Buffer
	cmd := cli.NewRootCommand(&out, &errOut)
	cmd.SetArgs(append([]string{"list", "-o", "json"}, conn...))
	if err := cmd.ExecuteContext(ctx); err != nil {
		return nil, err
	}
	var rows []summaryRow
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		return nil, fmt.Errorf("decoding starter list: %w", err)
	}
	return rows, nil
}

// renderSummary writes one screen: every connector with its state,
// processed count, rate since the previous screen, lag and last error.
func renderSummary(w io.Writer, now time.Time, rows []summaryRow, prev map[string]int64, elapsed time.Duration) {
	fmt.Fprintf(w, "bacalhau-connect dev stack — %s — %d connectors (Ctrl-C stops)\n\n", now.Format("15:04:05"), len(rows))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tSTATE\tPROCESSED\tRATE/S\tLAG\tLAST ERROR")
	for _, r := range rows {
		rate := "-"
		if before, ok := prev[r.Name]; ok && elapsed > 0 {
			rate = fmt.Sprintf("%.1f", float64(r.Processed-before)/elapsed.Seconds())
		}
		lastErr := r.LastError
		if len(lastErr) > 60 {
			lastErr = lastErr[:57] + "..."
		}
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", r.Name, r.Kind, r.State, r.Processed, rate, r.Lag, strings.ReplaceAll(lastErr, "\n", " "))
	}
	_ = tw.Flush()
}

// liveSummary redraws the summary every interval on a terminal (every
// 30 s, appended, when the output is a file or a pipe) until ctx ends.
func liveSummary(ctx context.Context, out io.Writer, conn []string) {
	interval, clear := 30*time.Second, false
	if f, ok := out.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			interval, clear = 2*time.Second, true
		}
	}
	prev := map[string]int64{}
	last := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		rows, err := listConnectors(ctx, conn)
		now := time.Now()
		var screen bytes.Buffer
		if clear {
			screen.WriteString("\x1b[H\x1b[2J")
		}
		if err != nil {
			fmt.Fprintf(&screen, "listing connectors: %v\n", err)
		} else {
			renderSummary(&screen, now, rows, prev, now.Sub(last))
			prev = map[string]int64{}
			for _, r := range rows {
				prev[r.Name] = r.Processed
			}
			last = now
		}
		_, _ = out.Write(screen.Bytes())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

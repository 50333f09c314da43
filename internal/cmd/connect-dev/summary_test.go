package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestRenderSummaryShowsRatesSinceThePreviousScreen(t *testing.T) {
	var b bytes.Buffer
	rows := []summaryRow{
		{Name: "web-events", Kind: "kafka", State: "running", Processed: 300, Lag: 12},
		{Name: "web-logs", Kind: "cron", State: "waiting", Processed: 12, LastError: "tick failed:\nbucket gone"},
	}
	renderSummary(&b, time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), rows, map[string]int64{"web-events": 100}, 10*time.Second)
	out := b.String()
	assert.Contains(t, out, "10:00:00 — 2 connectors")
	assert.Regexp(t, `web-events\s+kafka\s+running\s+300\s+20\.0\s+12\s+-`, out)
	assert.Regexp(t, `web-logs\s+cron\s+waiting\s+12\s+-\s+0\s+tick failed: bucket gone`, out)
}

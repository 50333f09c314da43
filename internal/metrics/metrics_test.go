package metrics

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestServerServesPrometheusHealthAndReadiness(t *testing.T) {
	s, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = s.Close(context.Background()) }()
	base := "http://" + s.Addr()

	code, _ := get(t, base+"/healthz")
	assert.Equal(t, http.StatusOK, code)
	code, _ = get(t, base+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code, "not ready before the worker starts")
	s.SetReady(true)
	code, _ = get(t, base+"/readyz")
	assert.Equal(t, http.StatusOK, code)

	h := s.Handler().WithTags(map[string]string{"connector": "web-logs", "kind": "cron"})
	h.Counter("connect_records_processed").Inc(12)
	h.Timer("connect_task_latency").Record(1500 * time.Millisecond)
	require.Eventually(t, func() bool { // the scope reports every second
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, `connect_records_processed_total{connector="web-logs",kind="cron"} 12`) &&
			strings.Contains(body, `connect_task_latency_seconds_count{connector="web-logs",kind="cron"} 1`)
	}, 5*time.Second, 100*time.Millisecond, "counters end in _total, timers are histograms in seconds, label values keep '-'")
}

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
)

// suiteSecrets are values no workflow history of the suite may hold (the
// stack's S3 secret key, gateway secrets, API keys, codec keys, and record
// canaries: text that only record data holds), by what they are.
var suiteSecrets = struct {
	sync.Mutex
	values map[string]string
}{values: map[string]string{}}

// noteSecret adds a value the history scan looks for after the suite.
func noteSecret(what, value string) {
	if len(value) < 8 {
		return // too short to search for without false alarms
	}
	suiteSecrets.Lock()
	defer suiteSecrets.Unlock()
	suiteSecrets.values[what] = value
}

// noteRecord adds a record canary: text that is part of a test's record
// data (a poison record's line, say). No history may hold it, whatever path
// it took: the record itself, or a task's stdout or stderr quoting it in an
// activity result, an error, a status report or a dead-letter input
// (DESIGN.md §2.4, no record payloads in history).
//
// Tasks get records as JSON lines and may quote them so (the sample task
// does), and JSON payloads escape them once more, so the canary is the
// value's longest prefix that JSON leaves as it is.
func noteRecord(what, value string) {
	if i := strings.IndexAny(value, "\"\\<>&\n\r\t"); i >= 0 {
		value = value[:i]
	}
	noteSecret("record data: "+what, value)
}

// presignMarkers are query parameters of presigned S3 URLs: a signature in
// history would outlive its TTL there.
var presignMarkers = []string{"X-Amz-Signature=", "X-Amz-Credential="}

// scanHistories reads the history of every workflow the suite left in the
// namespace, with every payload's data decoded, and reports each secret,
// record canary or presigned URL signature found (history hygiene,
// DESIGN.md §2).
func scanHistories(ctx context.Context) (problems []string, scanned int, err error) {
	suiteSecrets.Lock()
	secrets := make(map[string]string, len(suiteSecrets.values))
	for k, v := range suiteSecrets.values {
		secrets[k] = v
	}
	suiteSecrets.Unlock()
	for i, g := range env.GatewaySecrets() {
		if len(g) >= 8 {
			secrets[fmt.Sprintf("input gateway secret #%d", i+1)] = g
		}
	}
	names := make([]string, 0, len(secrets))
	for k := range secrets {
		names = append(names, k)
	}
	sort.Strings(names)

	req := &workflowservice.ListWorkflowExecutionsRequest{Namespace: env.Temporal.Namespace(), PageSize: 1000}
	for {
		resp, err := env.Client.ListWorkflow(ctx, req)
		if err != nil {
			return problems, scanned, fmt.Errorf("listing workflows: %w", err)
		}
		for _, e := range resp.Executions {
			id, runID := e.Execution.GetWorkflowId(), e.Execution.GetRunId()
			it := env.Client.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			for it.HasNext() {
				ev, err := it.Next()
				if err != nil {
					return problems, scanned, fmt.Errorf("history of %s: %w", id, err)
				}
				raw, err := protojson.Marshal(ev)
				if err != nil {
					return problems, scanned, err
				}
				text := payloadText(string(raw))
				for _, n := range names {
					if strings.Contains(text, secrets[n]) {
						problems = append(problems, fmt.Sprintf("%s (run %s) event %d holds %s", id, runID, ev.GetEventId(), n))
					}
				}
				for _, m := range presignMarkers {
					if strings.Contains(text, m) {
						problems = append(problems, fmt.Sprintf("%s (run %s) event %d holds a presigned URL (%s)", id, runID, ev.GetEventId(), m))
					}
				}
			}
			scanned++
		}
		if len(resp.NextPageToken) == 0 {
			return problems, scanned, nil
		}
		req.NextPageToken = resp.NextPageToken
	}
}

// payloadText is a history's JSON with every payload's base64 data decoded
// beside it, so a search sees what the payloads say (JSON payloads print
// as base64).
func payloadText(raw string) string {
	var doc any
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		return raw
	}
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && k == "data" {
					if dec, err := base64.StdEncoding.DecodeString(s); err == nil {
						b.Write(dec)
						b.WriteByte('\n')
					}
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case string:
			b.WriteString(v)
			b.WriteByte('\n')
		}
	}
	walk(doc)
	return b.String()
}

// TestPayloadTextSeesInsidePayloads: the scan searches decoded payload data,
// where a secret in a workflow input would sit (base64 in the history's
// JSON), not only the JSON's plain text.
func TestPayloadTextSeesInsidePayloads(t *testing.T) {
	p, err := converter.GetDefaultDataConverter().ToPayload(map[string]string{"Key": "a-planted-secret-value"})
	require.NoError(t, err)
	ev := &historypb.HistoryEvent{EventId: 1, Attributes: &historypb.HistoryEvent_WorkflowExecutionStartedEventAttributes{
		WorkflowExecutionStartedEventAttributes: &historypb.WorkflowExecutionStartedEventAttributes{Input: &commonpb.Payloads{Payloads: []*commonpb.Payload{p}}},
	}}
	raw, err := protojson.Marshal(ev)
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "a-planted-secret-value", "the JSON alone shows base64")
	assert.Contains(t, payloadText(string(raw)), "a-planted-secret-value")
}

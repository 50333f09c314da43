package main

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The task reads and writes JSON by hand (json.go). These tests hold it to
// encoding/json: the line readers against the encoding/json versions they
// replaced (below, ref*), the summary byte for byte against json.Marshal
// (HTML escaping off).

var recordLines = []string{
	`{"partition":0,"offset":5,"timestamp":"2026-12-06T10:00:00Z","key":"k","value":"1.2.3.4 - - [10/Oct/2026:13:55:36 +0000] \"GET /a HTTP/1.1\" 200 512 \"-\" \"curl/8\""}`,
	`{"partition":3,"offset":9007199254740993,"value":"{\"status\":404,\"bytes\":7,\"path\":\"/x\\y\"}"}`,
	`{"partition":1,"offset":1,"value":"caf\u00e9 \ud83d\ude00 \ud800 tab\tnl\n \/ \b\f\r"}`,
	`{"partition":1,"offset":1,"value_base64":"AAE="}`,
	`{"partition":1,"offset":1,"value":null}`,
	`{"partition":2147483648,"offset":1,"value":"x"}`,
	`{"partition":1.5,"offset":1,"value":"x"}`,
	`{"partition":1,"offset":"1","value":"x"}`,
	`{"partition":1,"offset":1,"value":"x","headers":{"a":["b","}"]},"n":[1,{"x":"]"}]}`,
	`{"partition":1,"offset":1,"value":"x"} trailing`,
	`{"partition":1,"offset":1,"value":"x"`,
	`{"partition":1,"offset":1,"value":"unterminated}`,
	`{"shard_id":"shardId-000000000000","sequence_number":"49590338271490256608559692538361571095921575989136588898","value":"GET \"/k\"","partition_key":"u-1","arrival":"2026-12-06T10:00:00Z"}`,
	`{"shard_id":"s","sequence_number":5,"value":"x"}`,
	`{"unit":"web.eu","position":17,"timestamp":"2026-12-06T10:00:00Z","key":"web.eu","value":"GET \"/n\"","headers":{"a":"b"}}`,
	`{"unit":"web.eu","position":-1,"value":"x"}`,
	`{"unit":"web.eu","position":"17","value":"x"}`,
	`{"unit":7,"position":17,"value":"x"}`,
	`{"unit":"u","position":17,"value_base64":"AAE="}`,
	`{"id":"m-1","body":"{\"status\":200,\"bytes\":10,\"path\":\"/q\"}","attributes":{"a":"b"}}`,
	`{"id":"m-2","body":null}`,
	`{"status":200,"bytes":10,"path":"/a"}`,
	`{"status":200,"path":"/a"}`,
	`{"status":200,"bytes":null,"path":"/a"}`,
	`{"status":200,"bytes":"10","path":"/a"}`,
	`{"status":"200","bytes":10,"path":"/a"}`,
	`{"status":200,"bytes":10,"path":""}`,
	`{"status":200,"bytes":10,"path":7}`,
	`{"status":2e2,"bytes":10,"path":"/a"}`,
	`{ "status" : 301 , "bytes" : -1 , "path" : "/\u0041" }`,
	`{"status":200,"bytes":10,"path":"/a","extra":[true,false,null]}`,
	`{}`,
	`{"status":200,"bytes":10,"path":"/a",}`,
}

func TestLineReadersMatchEncodingJSON(t *testing.T) {
	for _, line := range recordLines {
		p, o, v, ok := kafkaRecord(line)
		rp, ro, rv, rok := refKafkaRecord(line)
		assert.Equal(t, []any{rp, ro, rv, rok}, []any{p, o, v, ok}, "kafka %s", line)
		r, kv, kok := kinesisRecord(line)
		rr, rkv, rkok := refKinesisRecord(line)
		assert.Equal(t, []any{rr, rkv, rkok}, []any{r, kv, kok}, "kinesis %s", line)
		sr, sv, sok := sourceRecord(line)
		rsr, rsv, rsok := refSourceRecord(line)
		assert.Equal(t, []any{rsr, rsv, rsok}, []any{sr, sv, sok}, "source %s", line)
		id, body, qok := queueMessage(line)
		rid, rbody, rqok := refQueueMessage(line)
		assert.Equal(t, []any{rid, rbody, rqok}, []any{id, body, qok}, "queue %s", line)
		st, size, path, lok := parseLine(line)
		rst, rsize, rpath, rlok := refParseLine(line)
		assert.Equal(t, []any{rst, rsize, rpath, rlok}, []any{st, size, path, lok}, "log line %s", line)
	}
}

// TestStringsRoundTripThroughTheReader: any string encoding/json writes,
// the reader reads back.
func TestStringsRoundTripThroughTheReader(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	alphabet := []string{"a", "\"", "\\", "/", "\n", "\t", "\x00", "\x1f", "<", "&", "é", "😀", "\u2028", "\xff", "}", ","}
	for i := 0; i < 2000; i++ {
		var b strings.Builder
		for j := rng.Intn(12); j > 0; j-- {
			b.WriteString(alphabet[rng.Intn(len(alphabet))])
		}
		raw, err := json.Marshal(map[string]string{"value": b.String()})
		require.NoError(t, err)
		f, ok := jsonObject(string(raw))
		require.True(t, ok, "%s", raw)
		var want map[string]string
		require.NoError(t, json.Unmarshal(raw, &want))
		got, _ := f.String("value")
		assert.Equal(t, want["value"], got, "%s", raw)
	}
}

func TestSummaryIsWrittenAsEncodingJSONWritesIt(t *testing.T) {
	for _, s := range []*Summary{
		{ByStatus: map[string]int{}},
		{Files: 2, Inputs: []string{"a.log", "dir/b \"q\".log"}, Requests: 3, Bytes: 1 << 40,
			ByStatus: map[string]int{"200": 2, "404": 1, "500": 0}, TopPaths: []PathCount{{Path: "/a<&>", Count: 2}, {Path: "/\u2028\x01\b\f\xff", Count: 1}},
			Malformed: 1, KafkaOffsets: map[string][]int64{"10": {1, 2}, "2": {-1}}, KinesisRecords: []string{"s/1"}, SourceRecords: []string{"web.eu/17"},
			MessageIDs: []string{"m1", "m2"}, FailedIDs: []string{"m3"}, Paths: []string{"/a", "/é"}},
		{Files: 1, Inputs: []string{}, ByStatus: map[string]int{"200": 1}, TopPaths: []PathCount{}, KafkaOffsets: map[string][]int64{}},
	} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode(s))
		assert.Equal(t, strings.TrimSuffix(want.String(), "\n"), string(s.marshal()))
	}
}

func TestFlagsParseAsTheFlagPackageDid(t *testing.T) {
	o, err := parseFlags([]string{"-inputs=/in", "--outputs", "/out", "-top", "3", "-delay=1s", "-list-paths", "-reject=POISON", "-fail-on", "PARTIAL", "-slow-on=SLOW", "-slow-for=2m"})
	require.NoError(t, err)
	assert.Equal(t, options{inputs: "/in", outputs: "/out", top: 3, delay: time.Second, slowFor: 2 * time.Minute,
		reject: "POISON", failOn: "PARTIAL", slowOn: "SLOW", listPaths: true}, *o)
	o, err = parseFlags(nil)
	require.NoError(t, err)
	assert.Equal(t, options{inputs: "/inputs", outputs: "/outputs", top: 10, slowFor: 10 * time.Minute}, *o)
	o, err = parseFlags([]string{"-list-paths=false"})
	require.NoError(t, err)
	assert.False(t, o.listPaths)
	for args, msg := range map[string]string{
		"-nope=1":    "flag provided but not defined: -nope",
		"-top=x":     `invalid value "x" for flag -top`,
		"-delay":     "flag needs a value: -delay",
		"stray":      `unexpected argument "stray"`,
		"-delay=10q": `invalid value "10q" for flag -delay`,
	} {
		_, err := parseFlags(strings.Fields(args))
		assert.EqualError(t, err, msg, args)
	}
}

// The encoding/json line readers the task used before json.go.

func refKafkaRecord(line string) (partition string, offset int64, value string, ok bool) {
	if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"offset"`) {
		return "", 0, "", false
	}
	var rec struct {
		Partition *int32  `json:"partition"`
		Offset    *int64  `json:"offset"`
		Value     *string `json:"value"`
	}
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Partition == nil || rec.Offset == nil || rec.Value == nil {
		return "", 0, "", false
	}
	return strconv.Itoa(int(*rec.Partition)), *rec.Offset, *rec.Value, true
}

func refKinesisRecord(line string) (rec, value string, ok bool) {
	if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"sequence_number"`) {
		return "", "", false
	}
	var r struct {
		Shard    *string `json:"shard_id"`
		Sequence *string `json:"sequence_number"`
		Value    *string `json:"value"`
	}
	if err := json.Unmarshal([]byte(line), &r); err != nil || r.Shard == nil || r.Sequence == nil || r.Value == nil {
		return "", "", false
	}
	return *r.Shard + "/" + *r.Sequence, *r.Value, true
}

func refSourceRecord(line string) (rec, value string, ok bool) {
	if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"position"`) {
		return "", "", false
	}
	var r struct {
		Unit     *string `json:"unit"`
		Position *int64  `json:"position"`
		Value    *string `json:"value"`
	}
	if err := json.Unmarshal([]byte(line), &r); err != nil || r.Unit == nil || r.Position == nil || r.Value == nil || *r.Position < 0 {
		return "", "", false
	}
	return *r.Unit + "/" + strconv.FormatInt(*r.Position, 10), *r.Value, true
}

func refQueueMessage(line string) (id, body string, ok bool) {
	if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"body"`) {
		return "", "", false
	}
	var m struct {
		ID   *string `json:"id"`
		Body *string `json:"body"`
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil || m.ID == nil || m.Body == nil {
		return "", "", false
	}
	return *m.ID, *m.Body, true
}

func refParseLine(line string) (status int, size int64, path string, ok bool) {
	if strings.HasPrefix(line, "{") {
		var rec struct {
			Status *int   `json:"status"`
			Bytes  *int64 `json:"bytes"`
			Path   string `json:"path"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Status == nil || rec.Path == "" {
			return 0, 0, "", false
		}
		if rec.Bytes != nil {
			size = *rec.Bytes
		}
		return *rec.Status, size, rec.Path, true
	}
	return parseCombined(line)
}

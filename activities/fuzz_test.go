package activities

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/twmb/franz-go/pkg/kgo"
)

// decodeLine checks a batch line's framing (one JSON object, one trailing
// newline) and returns its fields and value bytes.
func decodeLine(t *testing.T, line []byte) (map[string]any, []byte) {
	t.Helper()
	if !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("not one line: %q", line)
	}
	var fields map[string]any
	if err := json.Unmarshal(line, &fields); err != nil {
		t.Fatalf("not JSON: %v: %q", err, line)
	}
	if v, ok := fields["value"].(string); ok {
		return fields, []byte(v)
	}
	if v, ok := fields["value_base64"].(string); ok {
		raw, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			t.Fatalf("value_base64: %v", err)
		}
		return fields, raw
	}
	return fields, nil
}

// keyOf returns a line's key bytes (key as text, or key_base64).
func keyOf(t *testing.T, fields map[string]any) []byte {
	t.Helper()
	if k, ok := fields["key_base64"].(string); ok {
		raw, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			t.Fatalf("key_base64: %v", err)
		}
		return raw
	}
	k, _ := fields["key"].(string)
	return []byte(k)
}

// FuzzEncodeRecord: a Kafka record's inline line is one JSON line from
// which the task gets back exactly the record's key and value bytes,
// whatever they hold (binary, newlines, invalid UTF-8).
func FuzzEncodeRecord(f *testing.F) {
	f.Add([]byte("k"), []byte(`10.0.0.1 - - "GET / HTTP/1.1" 200`), int32(0), int64(0))
	f.Add([]byte{}, []byte("line\nwith\nnewlines"), int32(3), int64(99))
	f.Add([]byte{0xff, 0xfe}, []byte{0x00, 0xc3, 0x28}, int32(7), int64(1<<40))
	f.Fuzz(func(t *testing.T, key, value []byte, partition int32, offset int64) {
		line, err := EncodeRecord(&kgo.Record{Key: key, Value: value, Partition: partition, Offset: offset, Timestamp: time.Unix(1700000000, 0)})
		if err != nil {
			t.Fatal(err)
		}
		fields, got := decodeLine(t, line)
		if !bytes.Equal(got, value) {
			t.Fatalf("value %q came back as %q", value, got)
		}
		if k := keyOf(t, fields); !bytes.Equal(k, key) {
			t.Fatalf("key %q came back as %q", key, k)
		}
		if int64(fields["offset"].(float64)) != offset && offset < 1<<53 {
			t.Fatalf("offset %d came back as %v", offset, fields["offset"])
		}
	})
}

// FuzzEncodeKinesisRecord: the same for a Kinesis record.
func FuzzEncodeKinesisRecord(f *testing.F) {
	f.Add("shardId-000000000000", "user-1", []byte("click /home"), "49590338271490256608559692538361571095921575989136588898")
	f.Add("shardId-000000000001", "", []byte{0xff, 0x00, '\n'}, "1")
	f.Fuzz(func(t *testing.T, shard, key string, data []byte, seq string) {
		line, err := encodeKinesisRecord(shard, ktypes.Record{PartitionKey: aws.String(key), Data: data, SequenceNumber: aws.String(seq),
			ApproximateArrivalTimestamp: aws.Time(time.Unix(1700000000, 0))})
		if err != nil {
			t.Fatal(err)
		}
		fields, got := decodeLine(t, line)
		if !bytes.Equal(got, data) {
			t.Fatalf("data %q came back as %q", data, got)
		}
		// Partition keys are Unicode strings in the Kinesis API.
		if k, _ := fields["partition_key"].(string); utf8.ValidString(key) && k != key {
			t.Fatalf("partition key %q came back as %q", key, k)
		}
	})
}

// FuzzParseFailureReport: a task's partial-failure report never panics the
// parser; a refusal names the report's path and the expected shape, and
// every identifier it returns is one the report holds, never empty.
func FuzzParseFailureReport(f *testing.F) {
	f.Add([]byte(`{"batchItemFailures":[{"itemIdentifier":"m-1"},{"itemIdentifier":"m-2"}]}`))
	f.Add([]byte(`{"batchItemFailures":[]}`))
	f.Add([]byte(`{"batchItemFailures":[{"itemIdentifier":""}]}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ids, err := ParseFailureReport(raw)
		if err != nil {
			if !strings.Contains(err.Error(), FailureReportPath) || !strings.Contains(err.Error(), "batchItemFailures") {
				t.Fatalf("refusal does not name the report and its shape: %v", err)
			}
			return
		}
		for _, id := range ids {
			if id == "" {
				t.Fatal("an empty identifier")
			}
		}
		// The identifiers, written back in the documented shape, read the same.
		type item struct {
			ItemIdentifier string `json:"itemIdentifier"`
		}
		var canon struct {
			BatchItemFailures []item `json:"batchItemFailures"`
		}
		for _, id := range ids {
			canon.BatchItemFailures = append(canon.BatchItemFailures, item{id})
		}
		again, err := json.Marshal(canon)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseFailureReport(again)
		if err != nil || strings.Join(back, "\x00") != strings.Join(ids, "\x00") {
			t.Fatalf("round trip of %q gave %q (%v)", ids, back, err)
		}
	})
}

// FuzzCursor: whatever the objects and the order of batches, an object the
// cursor recorded as processed is never a candidate again (exactly once),
// and an object after the cursor's key that was never processed is one.
func FuzzCursor(f *testing.F) {
	f.Add([]byte("a\x01b\x02c\x03"), uint8(60), uint8(0))
	f.Add([]byte("logs/09\x05logs/10\x01logs/08\x07"), uint8(5), uint8(2))
	f.Fuzz(func(t *testing.T, raw []byte, lookbackMin, failEvery uint8) {
		// raw: key bytes, each object ended by a byte giving its minute.
		var objs []Object
		key := []byte{}
		for _, b := range raw {
			if b < 0x10 {
				if len(key) > 0 {
					objs = append(objs, Object{Key: string(key), LastModified: time.Date(2026, 11, 27, 10, int(b), 0, 0, time.UTC)})
				}
				key = nil
				continue
			}
			key = append(key, b)
		}
		lookback := time.Duration(lookbackMin) * time.Minute
		seen := map[string]bool{}
		var uniq []Object
		for _, o := range objs {
			if !seen[o.Key] {
				seen[o.Key] = true
				uniq = append(uniq, o)
			}
		}
		// One listing: candidates in key order, batches of 2; every
		// failEvery-th batch fails (MarkDone for the ones after it).
		var c Cursor
		var cands []Object
		for _, o := range uniq {
			if c.Candidate(o, time.Time{}, lookback) {
				cands = append(cands, o)
			}
		}
		sortObjects(cands)
		done := map[string]bool{}
		failed := false
		for i := 0; i < len(cands); i += 2 {
			batch := cands[i:min(i+2, len(cands))]
			if failEvery > 0 && (i/2)%int(failEvery) == int(failEvery)-1 {
				failed = true
				continue
			}
			if failed {
				c = c.MarkDone(batch, lookback)
			} else {
				c = c.Advance(batch, lookback)
			}
			for _, o := range batch {
				done[o.Key] = true
			}
		}
		for _, o := range uniq {
			if done[o.Key] && c.Candidate(o, time.Time{}, lookback) {
				t.Fatalf("processed %s is a candidate again (cursor %+v)", o.Key, c)
			}
			if !done[o.Key] && o.Key > c.Key && !c.Candidate(o, time.Time{}, lookback) {
				t.Fatalf("unprocessed %s after the key is no candidate (cursor %+v)", o.Key, c)
			}
		}
	})
}

func sortObjects(objs []Object) {
	for i := 1; i < len(objs); i++ {
		for j := i; j > 0 && objs[j].Key < objs[j-1].Key; j-- {
			objs[j], objs[j-1] = objs[j-1], objs[j]
		}
	}
}

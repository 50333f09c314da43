// Command logsummary is the sample Bacalhau log task: a WASI program (build it
// with GOOS=wasip1 GOARCH=wasm, not stripped) that reads every file under
// /inputs, aggregates the log lines it finds and writes the summary as JSON to
// /outputs/summary.json and to stdout.
//
// Two line formats are understood, and may be mixed within one file (also
// wrapped in the JSON lines the Kafka, Kinesis and queue connectors deliver):
//
//   - nginx "combined": 1.2.3.4 - - [10/Oct/2026:13:55:36 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl/8"
//   - JSON lines with "status" (number), "bytes" (number) and "path" (string).
//
// Blank lines are ignored; any other line counts as malformed. The program
// exits 2 with a message on stderr when /inputs holds no file, so a task that
// was handed no input fails loudly instead of reporting an empty summary.
//
// Flags (the job's engine Parameters):
//
//	-inputs DIR   folder to read (default /inputs)
//	-outputs DIR  folder to write summary.json into (default /outputs)
//	-top N        how many paths to list in top_paths (default 10)
//	-delay D      sleep D before reading, to simulate a slow task (default 0)
//	-reject WORD  exit 3 when a line contains WORD, to simulate a task that
//	              cannot process a record ("poison"); default off
//	-slow-on WORD sleep -slow-for after reading when a line contains WORD, to
//	              simulate a task that exceeds its execution timeout on some
//	              records; default off
//	-slow-for D   how long -slow-on sleeps (default 10m)
//	-list-paths   list every request's path in "paths", in the order read
//	              (chaos ledgers mark each record with a unique path)
//	-fail-on WORD report queue messages whose body contains WORD as failed in
//	              /outputs/failures.json ({"batchItemFailures":[{"itemIdentifier":
//	              ID}]}, the partial-failure report) instead of exiting non-zero
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Summary is what the task reports. Its JSON form is the task's output contract.
type Summary struct {
	Files int `json:"files"`
	// Inputs lists the files read, relative to the inputs folder, sorted:
	// connectors build exactly-once ledgers from it.
	Inputs    []string       `json:"inputs"`
	Requests  int            `json:"requests"`
	Bytes     int64          `json:"bytes"`
	ByStatus  map[string]int `json:"by_status"`
	TopPaths  []PathCount    `json:"top_paths"`
	Malformed int            `json:"malformed"`
	// KafkaOffsets lists, per partition, the offsets of the Kafka records
	// read (JSON lines with partition, offset and value, as stream
	// connectors deliver them), in the order read.
	KafkaOffsets map[string][]int64 `json:"kafka_offsets,omitempty"`
	// KinesisRecords lists the Kinesis records read (JSON lines with
	// shard_id, sequence_number and value, as the Kinesis connector delivers
	// them) as "SHARD/SEQUENCE", in the order read.
	KinesisRecords []string `json:"kinesis_records,omitempty"`
	// MessageIDs lists the IDs of the queue messages read (JSON lines with
	// id and body, as queue connectors deliver them), in the order read.
	MessageIDs []string `json:"message_ids,omitempty"`
	// FailedIDs are the messages reported as failed (-fail-on).
	FailedIDs []string `json:"failed_ids,omitempty"`
	// Paths lists every request's path, in the order read (-list-paths).
	Paths []string `json:"paths,omitempty"`
}

// PathCount is one entry of Summary.TopPaths.
type PathCount struct {
	Path  string `json:"path"`
	Count int    `json:"count"`
}

func main() {
	inputs := flag.String("inputs", "/inputs", "folder to read")
	outputs := flag.String("outputs", "/outputs", "folder to write summary.json into")
	top := flag.Int("top", 10, "how many paths to list in top_paths")
	delay := flag.Duration("delay", 0, "sleep this long before reading (simulates a slow task)")
	reject := flag.String("reject", "", "exit 3 when a line contains this word (simulates a poison record)")
	failOn := flag.String("fail-on", "", "report queue messages containing this word as failed in failures.json")
	slowOn := flag.String("slow-on", "", "sleep -slow-for after reading when a line contains this word (simulates a task exceeding its timeout)")
	slowFor := flag.Duration("slow-for", 10*time.Minute, "how long -slow-on sleeps")
	listPaths := flag.Bool("list-paths", false, "list every request's path in paths")
	flag.Parse()

	if *delay > 0 {
		time.Sleep(*delay)
	}
	opts := scanOptions{reject: *reject, failOn: *failOn, slowOn: *slowOn, listPaths: *listPaths}
	sum, err := summarize(*inputs, *top, &opts)
	if opts.slow {
		time.Sleep(*slowFor)
	}
	var poison *poisonError
	if errors.As(err, &poison) {
		fmt.Fprintln(os.Stderr, "logsummary:", err)
		os.Exit(3)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "logsummary:", err)
		os.Exit(2)
	}
	out, err := json.Marshal(sum)
	if err != nil {
		fmt.Fprintln(os.Stderr, "logsummary: encoding summary:", err)
		os.Exit(1)
	}
	if err := os.MkdirAll(*outputs, 0o755); err == nil {
		if err := os.WriteFile(filepath.Join(*outputs, "summary.json"), out, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "logsummary: writing summary.json:", err)
			os.Exit(1)
		}
		if len(sum.FailedIDs) > 0 {
			if err := writeFailures(filepath.Join(*outputs, "failures.json"), sum.FailedIDs); err != nil {
				fmt.Fprintln(os.Stderr, "logsummary: writing failures.json:", err)
				os.Exit(1)
			}
		}
	}
	fmt.Println(string(out))
}

// writeFailures writes the partial-failure report queue connectors read.
func writeFailures(path string, ids []string) error {
	type item struct {
		ItemIdentifier string `json:"itemIdentifier"`
	}
	report := struct {
		BatchItemFailures []item `json:"batchItemFailures"`
	}{}
	for _, id := range ids {
		report.BatchItemFailures = append(report.BatchItemFailures, item{ItemIdentifier: id})
	}
	raw, err := json.Marshal(report)
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o644)
}

// poisonError is a line the task refuses (-reject).
type poisonError struct{ line string }

func (e *poisonError) Error() string { return "cannot process record: " + e.line }

// scanOptions are the flags that act on each line; slow is set when a line
// matched slowOn.
type scanOptions struct {
	reject, failOn, slowOn string
	listPaths, slow        bool
}

func summarize(root string, top int, opts *scanOptions) (*Summary, error) {
	sum := &Summary{ByStatus: map[string]int{}}
	paths := map[string]int{}
	if _, err := os.Stat(root); errors.Is(err, fs.ErrNotExist) {
		return nil, errors.New("no input files under " + root + " (the folder does not exist)")
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		sum.Files++
		rel, err := filepath.Rel(root, p)
		if err != nil {
			rel = p
		}
		sum.Inputs = append(sum.Inputs, filepath.ToSlash(rel))
		return scan(f, sum, paths, opts)
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", root, err)
	}
	if sum.Files == 0 {
		return nil, errors.New("no input files under " + root)
	}
	sort.Strings(sum.Inputs)
	for p, n := range paths {
		sum.TopPaths = append(sum.TopPaths, PathCount{Path: p, Count: n})
	}
	sort.Slice(sum.TopPaths, func(i, j int) bool {
		if sum.TopPaths[i].Count != sum.TopPaths[j].Count {
			return sum.TopPaths[i].Count > sum.TopPaths[j].Count
		}
		return sum.TopPaths[i].Path < sum.TopPaths[j].Path
	})
	if len(sum.TopPaths) > top {
		sum.TopPaths = sum.TopPaths[:top]
	}
	return sum, nil
}

// maxLine is the longest input line (one record, with a stream
// connector's JSON wrapping) the task reads.
const maxLine = 64 << 20

func scan(r io.Reader, sum *Summary, paths map[string]int, opts *scanOptions) error {
	reject, failOn := opts.reject, opts.failOn
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if reject != "" && strings.Contains(line, reject) {
			return &poisonError{line: line}
		}
		if opts.slowOn != "" && strings.Contains(line, opts.slowOn) {
			opts.slow = true
		}
		if p, off, value, isRecord := kafkaRecord(line); isRecord {
			if sum.KafkaOffsets == nil {
				sum.KafkaOffsets = map[string][]int64{}
			}
			sum.KafkaOffsets[p] = append(sum.KafkaOffsets[p], off)
			line = strings.TrimSpace(value)
		} else if rec, value, isKinesis := kinesisRecord(line); isKinesis {
			sum.KinesisRecords = append(sum.KinesisRecords, rec)
			line = strings.TrimSpace(value)
		} else if id, body, isMessage := queueMessage(line); isMessage {
			if failOn != "" && strings.Contains(body, failOn) {
				sum.FailedIDs = append(sum.FailedIDs, id)
				continue
			}
			sum.MessageIDs = append(sum.MessageIDs, id)
			line = strings.TrimSpace(body)
		}
		status, size, path, ok := parseLine(line)
		if !ok {
			sum.Malformed++
			continue
		}
		sum.Requests++
		sum.Bytes += size
		sum.ByStatus[strconv.Itoa(status)]++
		paths[path]++
		if opts.listPaths {
			sum.Paths = append(sum.Paths, path)
		}
	}
	return sc.Err()
}

// kafkaRecord unwraps a stream connector's record line:
// {"partition":0,"offset":5,"value":"<log line>"}.
func kafkaRecord(line string) (partition string, offset int64, value string, ok bool) {
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

// kinesisRecord unwraps a Kinesis connector's record line:
// {"shard_id":"shardId-000000000000","sequence_number":"4959…","value":"<log line>",…}.
func kinesisRecord(line string) (rec, value string, ok bool) {
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

// queueMessage unwraps a queue connector's message line:
// {"id":"…","body":"<log line>",…}.
func queueMessage(line string) (id, body string, ok bool) {
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

func parseLine(line string) (status int, size int64, path string, ok bool) {
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

// parseCombined reads the request, status and size of an nginx "combined" line:
// remote - user [time] "METHOD PATH PROTO" status bytes "referer" "agent".
func parseCombined(line string) (status int, size int64, path string, ok bool) {
	q1 := strings.IndexByte(line, '"')
	if q1 < 0 || !strings.Contains(line[:q1], "[") {
		return 0, 0, "", false
	}
	q2 := strings.IndexByte(line[q1+1:], '"')
	if q2 < 0 {
		return 0, 0, "", false
	}
	request := strings.Fields(line[q1+1 : q1+1+q2])
	if len(request) < 2 {
		return 0, 0, "", false
	}
	rest := strings.Fields(line[q1+q2+2:])
	if len(rest) < 2 {
		return 0, 0, "", false
	}
	st, err := strconv.Atoi(rest[0])
	if err != nil || st < 100 || st > 599 {
		return 0, 0, "", false
	}
	if rest[1] != "-" {
		if size, err = strconv.ParseInt(rest[1], 10, 64); err != nil || size < 0 {
			return 0, 0, "", false
		}
	}
	return st, size, request[1], true
}

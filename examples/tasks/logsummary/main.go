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
	"errors"
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
	// SourceRecords lists the records of source stream connectors (NATS
	// JetStream: JSON lines with unit, position and value) as
	// "UNIT/POSITION", in the order read.
	SourceRecords []string `json:"source_records,omitempty"`
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

// options are the task's flags.
type options struct {
	inputs, outputs        string
	top                    int
	delay, slowFor         time.Duration
	reject, failOn, slowOn string
	listPaths              bool
}

// parseFlags reads -name=value, -name value and -bool flags (one or two
// dashes), as the flag package does.
func parseFlags(args []string) (*options, error) {
	o := &options{inputs: "/inputs", outputs: "/outputs", top: 10, slowFor: 10 * time.Minute}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			return nil, errors.New("unexpected argument " + strconv.Quote(a))
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if name == "list-paths" {
			b, err := strconv.ParseBool(value)
			if !hasValue {
				b, err = true, nil
			}
			if err != nil {
				return nil, errors.New("-list-paths: " + strconv.Quote(value) + " is not true or false")
			}
			o.listPaths = b
			continue
		}
		if !hasValue {
			if i+1 == len(args) {
				return nil, errors.New("flag needs a value: -" + name)
			}
			i++
			value = args[i]
		}
		var err error
		switch name {
		case "inputs":
			o.inputs = value
		case "outputs":
			o.outputs = value
		case "top":
			o.top, err = strconv.Atoi(value)
		case "delay":
			o.delay, err = time.ParseDuration(value)
		case "slow-for":
			o.slowFor, err = time.ParseDuration(value)
		case "reject":
			o.reject = value
		case "fail-on":
			o.failOn = value
		case "slow-on":
			o.slowOn = value
		default:
			return nil, errors.New("flag provided but not defined: -" + name)
		}
		if err != nil {
			return nil, errors.New("invalid value " + strconv.Quote(value) + " for flag -" + name)
		}
	}
	return o, nil
}

// fail writes "logsummary: " and the message to stderr and exits with code.
func fail(code int, msg string) {
	os.Stderr.WriteString("logsummary: " + msg + "\n")
	os.Exit(code)
}

func main() {
	flags, err := parseFlags(os.Args[1:])
	if err != nil {
		fail(2, err.Error())
	}
	if flags.delay > 0 {
		time.Sleep(flags.delay)
	}
	opts := scanOptions{reject: flags.reject, failOn: flags.failOn, slowOn: flags.slowOn, listPaths: flags.listPaths}
	sum, err := summarize(flags.inputs, flags.top, &opts)
	if opts.slow {
		time.Sleep(flags.slowFor)
	}
	var poison *poisonError
	if errors.As(err, &poison) {
		fail(3, err.Error())
	}
	if err != nil {
		fail(2, err.Error())
	}
	out := sum.marshal()
	if err := os.MkdirAll(flags.outputs, 0o755); err == nil {
		if err := os.WriteFile(filepath.Join(flags.outputs, "summary.json"), out, 0o644); err != nil {
			fail(1, "writing summary.json: "+err.Error())
		}
		if len(sum.FailedIDs) > 0 {
			if err := writeFailures(filepath.Join(flags.outputs, "failures.json"), sum.FailedIDs); err != nil {
				fail(1, "writing failures.json: "+err.Error())
			}
		}
	}
	os.Stdout.Write(append(out, '\n'))
}

// writeFailures writes the partial-failure report queue connectors read:
// {"batchItemFailures":[{"itemIdentifier":ID},...]}.
func writeFailures(path string, ids []string) error {
	w := &jsonWriter{}
	w.raw(`{"batchItemFailures":[`)
	for i, id := range ids {
		if i > 0 {
			w.raw(",")
		}
		w.raw(`{"itemIdentifier":`)
		w.str(id)
		w.raw("}")
	}
	w.raw("]}")
	return os.WriteFile(path, w.b, 0o644)
}

// readError is a failure to read the inputs folder.
type readError struct {
	root string
	err  error
}

func (e readError) Error() string { return "reading " + e.root + ": " + e.err.Error() }
func (e readError) Unwrap() error { return e.err }

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
		return nil, readError{root: root, err: err}
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
		} else if rec, value, isSource := sourceRecord(line); isSource {
			sum.SourceRecords = append(sum.SourceRecords, rec)
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
	f, ok := jsonObject(line)
	if !ok {
		return "", 0, "", false
	}
	p, okP := f.Int("partition")
	off, okO := f.Int("offset")
	v, okV := f.String("value")
	if !okP || !okO || !okV || int64(int32(p)) != p {
		return "", 0, "", false
	}
	return strconv.FormatInt(p, 10), off, v, true
}

// kinesisRecord unwraps a Kinesis connector's record line:
// {"shard_id":"shardId-000000000000","sequence_number":"4959…","value":"<log line>",…}.
func kinesisRecord(line string) (rec, value string, ok bool) {
	if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"sequence_number"`) {
		return "", "", false
	}
	f, ok := jsonObject(line)
	if !ok {
		return "", "", false
	}
	shard, okS := f.String("shard_id")
	seq, okQ := f.String("sequence_number")
	v, okV := f.String("value")
	if !okS || !okQ || !okV {
		return "", "", false
	}
	return shard + "/" + seq, v, true
}

// sourceRecord unwraps a source stream connector's record line:
// {"unit":"web.eu","position":17,"value":"<log line>",…}.
func sourceRecord(line string) (rec, value string, ok bool) {
	if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"position"`) {
		return "", "", false
	}
	f, ok := jsonObject(line)
	if !ok {
		return "", "", false
	}
	unit, okU := f.String("unit")
	pos, okP := f.Int("position")
	v, okV := f.String("value")
	if !okU || !okP || !okV || pos < 0 {
		return "", "", false
	}
	return unit + "/" + strconv.FormatInt(pos, 10), v, true
}

// queueMessage unwraps a queue connector's message line:
// {"id":"…","body":"<log line>",…}.
func queueMessage(line string) (id, body string, ok bool) {
	if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"body"`) {
		return "", "", false
	}
	f, ok := jsonObject(line)
	if !ok {
		return "", "", false
	}
	id, okI := f.String("id")
	body, okB := f.String("body")
	if !okI || !okB {
		return "", "", false
	}
	return id, body, true
}

func parseLine(line string) (status int, size int64, path string, ok bool) {
	if strings.HasPrefix(line, "{") {
		f, ok := jsonObject(line)
		if !ok {
			return 0, 0, "", false
		}
		st, okS := f.Int("status")
		path, _ = f.String("path")
		if !okS || path == "" || int64(int(st)) != st {
			return 0, 0, "", false
		}
		if v, present := f["bytes"]; present && v.text != "null" {
			if size, ok = f.Int("bytes"); !ok {
				return 0, 0, "", false
			}
		}
		return int(st), size, path, true
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

package spec

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
	"github.com/bacalhau-connect/bacalhau-connect/internal/natssource"
	"github.com/bacalhau-connect/bacalhau-connect/internal/pubsubsource"
	"github.com/bacalhau-connect/bacalhau-connect/internal/tasktemplate"
	"github.com/bacalhau-connect/bacalhau-connect/source"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// Defaults of a cron connector.
const (
	DefaultTimezone   = "UTC"
	DefaultLookback   = time.Hour
	DefaultMaxObjects = 100
	MaxMaxObjects     = 1000
	// DefaultWASMFolderEntries bounds the entries of one folder of a WASM
	// task's /inputs (activities.FolderEntries): a Go guest lists 340
	// correctly and 341 forever; 256 leaves room for guests that read a
	// folder in smaller calls. Other engines mount real folders: no bound.
	DefaultWASMFolderEntries = 256
	DefaultMaxBytes          = 256 << 20
	DefaultConcurrency       = 4
	DefaultOverlap           = OverlapSkip
	DefaultCatchupWindow     = time.Hour
	DefaultMaxAttempts       = 3
)

// Problem is one thing wrong with a spec.
type Problem struct {
	// Path is the YAML path, e.g. source.s3.bucket.
	Path string
	// Message says what is wrong and how to fix it.
	Message string
}

func (p Problem) String() string { return p.Path + ": " + p.Message }

// Error lists every problem found in one spec.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "spec %s: ", e.File)
	if len(e.Problems) == 1 {
		b.WriteString(e.Problems[0].String())
		return b.String()
	}
	fmt.Fprintf(&b, "%d problems:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// Has reports whether a problem was found at path.
func (e *Error) Has(path string) bool {
	for _, p := range e.Problems {
		if p.Path == path {
			return true
		}
	}
	return false
}

// Resolved is a valid spec and the workflow configuration of its kind:
// exactly one of Cron, Kafka, Queue, Kinesis and SourceStream is set (kinds.ForSpec
// finds the kind that serves it).
type Resolved struct {
	Spec  *Spec
	Cron  *workflows.CronConfig
	Kafka *workflows.KafkaConfig
	// Queue is an sqs or sns connector's configuration.
	Queue *workflows.QueueConfig
	// Kinesis is a kinesis connector's configuration.
	Kinesis *workflows.KinesisConfig
	// SourceStream is the configuration of a connector of a source stream
	// kind (nats).
	SourceStream *workflows.SourceStreamConfig
	// SourceQueue is the configuration of a connector of a source queue
	// kind (pubsub).
	SourceQueue *workflows.SourceQueueConfig
}

// Loader loads specs of the built-in kinds and of source kinds: those
// built in (BuiltinStreamKinds, BuiltinQueueKinds) and those a worker and
// starter were built with (sdk.RunStarter).
type Loader struct {
	// StreamKinds are the source stream kinds a spec may name.
	StreamKinds []source.StreamKind
	// QueueKinds are the source queue kinds a spec may name.
	QueueKinds []source.QueueKind
}

// BuiltinStreamKinds are the source stream kinds of this repository.
func BuiltinStreamKinds() []source.StreamKind {
	return []source.StreamKind{natssource.Kind()}
}

// BuiltinQueueKinds are the source queue kinds of this repository.
func BuiltinQueueKinds() []source.QueueKind {
	return []source.QueueKind{pubsubsource.Kind()}
}

// BuiltinLoader loads the built-in kinds.
func BuiltinLoader() Loader {
	return Loader{StreamKinds: BuiltinStreamKinds(), QueueKinds: BuiltinQueueKinds()}
}

// LoadFile reads, decodes, validates and resolves a spec file of a
// built-in kind.
func LoadFile(path string) (*Resolved, error) {
	return BuiltinLoader().LoadFile(path)
}

// Load decodes, validates and resolves a spec of a built-in kind; path
// names it in errors and anchors the task template's relative path.
func Load(path string, raw []byte) (*Resolved, error) {
	return BuiltinLoader().Load(path, raw)
}

// sourceKind is a kind whose source section is its own: a stream kind
// (stream set) or a queue kind (queue set).
type sourceKind struct {
	stream *source.StreamKind
	queue  *source.QueueKind
}

func (k sourceKind) newConfig() any {
	if k.stream != nil {
		return k.stream.NewConfig()
	}
	return k.queue.NewConfig()
}

// sourceKinds are the source kinds a loader knows, by name.
type sourceKinds map[string]sourceKind

func (l Loader) kinds() sourceKinds {
	kinds := sourceKinds{}
	for _, k := range l.StreamKinds {
		kinds[k.Name] = sourceKind{stream: &k}
	}
	for _, k := range l.QueueKinds {
		kinds[k.Name] = sourceKind{queue: &k}
	}
	return kinds
}

// LoadFile reads, decodes, validates and resolves a spec file.
func (l Loader) LoadFile(path string) (*Resolved, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading spec: %w", err)
	}
	return l.Load(path, raw)
}

// Load decodes, validates and resolves a spec; path names it in errors and
// anchors the task template's relative path.
func (l Loader) Load(path string, raw []byte) (*Resolved, error) {
	kinds := l.kinds()
	s, problems := decode(raw, kinds)
	if len(problems) > 0 {
		return nil, &Error{File: path, Problems: problems}
	}
	r, problems := s.resolve(filepath.Dir(path), kinds)
	if len(problems) > 0 {
		return nil, &Error{File: path, Problems: problems}
	}
	return r, nil
}

// Decode strictly decodes one spec of a built-in kind: unknown fields and
// values of the wrong shape are errors (an *Error naming each field, with
// the file unnamed).
func Decode(raw []byte) (*Spec, error) {
	s, problems := decode(raw, BuiltinLoader().kinds())
	if len(problems) > 0 {
		return nil, &Error{File: "(text)", Problems: problems}
	}
	return s, nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidName reports whether name is a valid connector name: lowercase
// letters, digits and '-', at most 63, starting and ending with a letter or
// digit.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// intInRange is a count field's value: def when the spec leaves it out;
// a value written outside lo..hi is refused with its range.
func intInRange(add addFunc, path string, v *int, def, lo, hi int) int {
	if v == nil {
		return def
	}
	if *v < lo || *v > hi {
		add(path, "%d: use %d to %d (leave it out for the default, %d)", *v, lo, hi, def)
	}
	return *v
}

// sizeOrDefault is a size field's value in bytes: def when left out.
func sizeOrDefault(v *ByteSize, def int64) int64 {
	if v == nil {
		return def
	}
	return int64(*v)
}

func dur(d *Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

type addFunc func(path, format string, args ...any)

// resolve validates the spec and builds the workflow configuration of its
// kind. Template paths are relative to dir.
func (s *Spec) resolve(dir string, kinds sourceKinds) (*Resolved, []Problem) {
	var ps []Problem
	add := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}

	switch {
	case s.Name == "":
		add("name", "required: a connector name such as web-logs")
	case !nameRE.MatchString(s.Name):
		add("name", "%q: use lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit", s.Name)
	}
	r := &Resolved{Spec: s}
	switch s.Kind {
	case KindCron:
		s.onlyFor(KindCron, add)
		r.Cron = s.resolveCron(dir, add)
	case KindKafka:
		s.onlyFor(KindKafka, add)
		r.Kafka = s.resolveKafka(dir, add)
	case KindSQS, KindSNS:
		s.onlyFor(s.Kind, add)
		r.Queue = s.resolveQueue(dir, add)
	case KindKinesis:
		s.onlyFor(KindKinesis, add)
		r.Kinesis = s.resolveKinesis(dir, add)
	case "":
		add("kind", "required: %s", kindList(kinds))
	default:
		k, ok := kinds[s.Kind]
		switch {
		case !ok:
			add("kind", "unknown %q: use %s", s.Kind, kindList(kinds))
		case k.stream != nil:
			s.onlyFor(KindStream, add)
			r.SourceStream = s.resolveStreamKind(*k.stream, dir, add)
		default:
			s.onlyFor(KindQueue, add)
			r.SourceQueue = s.resolveQueueKind(*k.queue, dir, add)
		}
	}
	// A stream kind's section under another kind's spec.
	var other []string
	for name := range s.streamSections {
		if name != s.Kind {
			other = append(other, name)
		}
	}
	slices.Sort(other)
	for _, name := range other {
		add("source."+name, "only for kind %s: remove it", name)
	}
	return r, ps
}

// KindField is a field that only some kinds take.
type KindField struct {
	// Path is the field's YAML path, such as batch.max_records.
	Path string
	// Kinds are the spec kinds that take it.
	Kinds []string
	// set reports whether a spec writes the field.
	set func(*Spec) bool
}

// kindList names the kinds a spec may have.
func kindList(kinds sourceKinds) string {
	names := []string{KindCron, KindKafka, KindKinesis}
	for name := range kinds {
		names = append(names, name)
	}
	slices.Sort(names[3:])
	return strings.Join(append(names, KindSQS), ", ") + " or " + KindSNS
}

// KindFields are the fields only some kinds take: apply refuses them on
// the others, and the JSON Schema (connector.schema.json) says so too.
func KindFields() []KindField {
	return []KindField{
		{"schedule", []string{KindCron}, func(s *Spec) bool { return s.Schedule != "" }},
		{"timezone", []string{KindCron}, func(s *Spec) bool { return s.Timezone != "" }},
		{"source.s3", []string{KindCron}, func(s *Spec) bool { return s.Source.S3 != nil }},
		{"overlap", []string{KindCron}, func(s *Spec) bool { return s.Overlap != "" }},
		{"catchup_window", []string{KindCron}, func(s *Spec) bool { return s.CatchupWindow != nil }},
		{"dead_letter", []string{KindCron}, func(s *Spec) bool { return s.DeadLetter != nil }},
		{"batch.max_objects", []string{KindCron}, func(s *Spec) bool { return s.Batch.MaxObjects != nil }},
		{"batch.max_folder_entries", []string{KindCron}, func(s *Spec) bool { return s.Batch.MaxFolderEntries != nil }},
		{"batch.concurrency", []string{KindCron, KindSQS, KindSNS, KindQueue}, func(s *Spec) bool { return s.Batch.Concurrency != nil }},
		{"source.kafka", []string{KindKafka}, func(s *Spec) bool { return s.Source.Kafka != nil }},
		{"source.kinesis", []string{KindKinesis}, func(s *Spec) bool { return s.Source.Kinesis != nil }},
		{"mode", []string{KindKafka, KindKinesis, KindStream}, func(s *Spec) bool { return s.Mode != "" }},
		{"staging", []string{KindKafka, KindKinesis, KindStream}, func(s *Spec) bool { return s.Staging != nil }},
		{"on_failure", []string{KindKafka, KindKinesis, KindStream}, func(s *Spec) bool { return s.OnFailure != nil }},
		{"batch.max_records", []string{KindKafka, KindKinesis, KindStream}, func(s *Spec) bool { return s.Batch.MaxRecords != nil }},
		{"batch.max_in_flight", []string{KindKafka}, func(s *Spec) bool { return s.Batch.MaxInFlight != nil }},
		{"batch.max_wait", []string{KindKafka, KindKinesis, KindStream, KindSQS, KindSNS, KindQueue}, func(s *Spec) bool { return s.Batch.MaxWait != nil }},
		{"retry.max_record_age", []string{KindKafka, KindKinesis, KindStream}, func(s *Spec) bool { return s.Retry.MaxRecordAge != nil }},
		{"source.sqs", []string{KindSQS}, func(s *Spec) bool { return s.Source.SQS != nil }},
		{"source.sns", []string{KindSNS}, func(s *Spec) bool { return s.Source.SNS != nil }},
		{"batch.max_messages", []string{KindSQS, KindSNS, KindQueue}, func(s *Spec) bool { return s.Batch.MaxMessages != nil }},
	}
}

// onlyFor reports fields that belong to the other kind.
func (s *Spec) onlyFor(kind string, add addFunc) {
	var wrong []KindField
	for _, f := range KindFields() {
		if f.set(s) && !slices.Contains(f.Kinds, kind) {
			wrong = append(wrong, f)
		}
	}
	sort.Slice(wrong, func(i, j int) bool { return wrong[i].Path < wrong[j].Path })
	for _, f := range wrong {
		names := slices.Clone(f.Kinds)
		if i := slices.Index(names, KindStream); i >= 0 {
			names[i] = "a source stream kind such as nats"
		}
		if i := slices.Index(names, KindQueue); i >= 0 {
			names[i] = "a source queue kind such as pubsub"
		}
		add(f.Path, "only for kind %s: remove it", strings.Join(names, " or "))
	}
}

// resolveCron checks and resolves a cron connector's fields.
func (s *Spec) resolveCron(dir string, add addFunc) *workflows.CronConfig {
	tz := s.Timezone
	if tz == "" {
		tz = DefaultTimezone
	}
	if s.Schedule == "" {
		add("schedule", `required: a 5-field cron expression such as "*/5 * * * *" or "@every 5m"`)
	} else if _, err := workflows.ParseSchedule(s.Schedule, ""); err != nil {
		add("schedule", "%q: %v; use 5 fields (minute hour day-of-month month day-of-week) or @every 5m, @hourly, @daily", s.Schedule, err)
	}
	if _, err := time.LoadLocation(tz); err != nil {
		add("timezone", "unknown time zone %q: use an IANA name such as UTC or Europe/Berlin", s.Timezone)
	}

	src := s.Source.S3
	if src == nil {
		add("source.s3", "required: the bucket and prefix to scan")
		src = &S3Source{}
	} else {
		if src.Bucket == "" {
			add("source.s3.bucket", "required: name the bucket to scan")
		}
		checkEndpoint(add, "source.s3.endpoint", src.Endpoint)
		if src.StartAfter != "" && src.StartTime != nil {
			add("source.s3.start_after", "set start_after or start_time, not both")
		}
		if src.StartAfter != "" && !strings.HasPrefix(src.StartAfter, src.Prefix) {
			add("source.s3.start_after", "%q is not under prefix %q", src.StartAfter, src.Prefix)
		}
		if d := dur(src.Lookback, DefaultLookback); d < 0 {
			add("source.s3.lookback", "%s is negative: use a duration such as 1h", d)
		}
	}

	maxObjects := intInRange(add, "batch.max_objects", s.Batch.MaxObjects, DefaultMaxObjects, 1, MaxMaxObjects)
	maxBytes := sizeOrDefault(s.Batch.MaxBytes, DefaultMaxBytes)
	if maxBytes <= 0 {
		add("batch.max_bytes", "%d: use a positive size such as 256MiB (leave it out for the default)", maxBytes)
	}
	concurrency := intInRange(add, "batch.concurrency", s.Batch.Concurrency, DefaultConcurrency, 1, workflows.MaxCronConcurrency)

	cfg := &workflows.CronConfig{
		Name: s.Name, Schedule: s.Schedule, Timezone: tz,
		MaxObjects: maxObjects, MaxBytes: maxBytes, Concurrency: concurrency,
		Overlap: s.Overlap, CatchupWindow: dur(s.CatchupWindow, DefaultCatchupWindow),
	}
	cfg.Source = workflows.S3Source{Bucket: src.Bucket, Prefix: src.Prefix, Region: src.Region, Endpoint: src.Endpoint,
		StartAfter: src.StartAfter, Lookback: dur(src.Lookback, DefaultLookback)}
	if src.StartTime != nil {
		cfg.Source.StartTime = src.StartTime.UTC()
	}
	if cfg.Overlap == "" {
		cfg.Overlap = DefaultOverlap
	}
	if cfg.Overlap != OverlapSkip && cfg.Overlap != OverlapBufferOne {
		add("overlap", "unknown %q: use skip or buffer_one", s.Overlap)
	}
	if cfg.CatchupWindow < 0 {
		add("catchup_window", "%s is negative: use 0s to never catch up, or a duration such as 1h", cfg.CatchupWindow)
	}

	cfg.TaskConfig = s.resolveTask(dir, add)
	cfg.MaxFolderEntries = s.maxFolderEntries(cfg.Template, maxObjects, add)
	if dl := s.DeadLetter; dl != nil {
		switch {
		case dl.S3 == nil:
			add("dead_letter.s3", "required when dead_letter is set: the bucket and prefix for failed batches")
		case dl.S3.Bucket == "":
			add("dead_letter.s3.bucket", "required: name the bucket for failed-batch manifests")
		default:
			checkEndpoint(add, "dead_letter.s3.endpoint", dl.S3.Endpoint)
			cfg.DeadLetter = &workflows.S3Location{Bucket: dl.S3.Bucket, Prefix: dl.S3.Prefix, Region: dl.S3.Region, Endpoint: dl.S3.Endpoint}
		}
	}
	return cfg
}

func checkEndpoint(add addFunc, path, endpoint string) {
	if endpoint == "" {
		return
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add(path, "%q: use a URL such as https://s3.example.com or http://127.0.0.1:9000", endpoint)
	}
}

// resolveTask checks the task and retry sections and reads, renders and
// checks the template.
// maxFolderEntries is batch.max_folder_entries, defaulting by the
// template's engine: DefaultWASMFolderEntries for wasm, none otherwise.
func (s *Spec) maxFolderEntries(template string, maxObjects int, add addFunc) int {
	if v := s.Batch.MaxFolderEntries; v != nil {
		if *v < 1 || *v > MaxMaxObjects {
			add("batch.max_folder_entries", "%d: use 1 to %d (leave it out for the default: %d for WASM tasks, no bound otherwise)", *v, MaxMaxObjects, DefaultWASMFolderEntries)
		}
		return *v
	}
	if template != "" && tasktemplate.IsWASM(template) && maxObjects > DefaultWASMFolderEntries {
		return DefaultWASMFolderEntries
	}
	return 0
}

func (s *Spec) resolveTask(dir string, add addFunc) workflows.TaskConfig {
	t := s.Task
	p := workflows.TaskConfig{QueueTimeout: dur(t.QueueTimeout, 0), ExecutionTimeout: dur(t.ExecutionTimeout, 0), URLTTL: dur(t.Input.URLTTL, 0),
		Retry: s.resolveRetry(add)}
	if p.QueueTimeout < 0 {
		add("task.queue_timeout", "%s is negative: use a duration such as 10m", p.QueueTimeout)
	}
	if p.ExecutionTimeout < 0 {
		add("task.execution_timeout", "%s is negative: use a duration such as 5m", p.ExecutionTimeout)
	}
	if p.URLTTL < 0 {
		add("task.input.url_ttl", "%s is negative: use a duration such as 1h", p.URLTTL)
	}
	switch t.Input.Delivery {
	case "", DeliveryPresigned:
		p.Delivery = activities.DeliveryGateway
	case DeliveryS3:
		p.Delivery = activities.DeliveryS3
	default:
		add("task.input.delivery", "unknown %q: use presigned (capability URLs from the worker's gateway) or s3 (nodes with their own credentials)", t.Input.Delivery)
	}
	if t.Template == "" {
		add("task.template", "required: the path of a Bacalhau job YAML, relative to this spec")
		return p
	}
	path := t.Template
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		add("task.template", "cannot read %s: %v", path, errors.Unwrap(err))
		return p
	}
	text, err := tasktemplate.Render(string(raw), t.Vars)
	if err != nil {
		add("task.vars", "%s: %v: add it under task.vars", t.Template, err)
		return p
	}
	if _, err := tasktemplate.Build(text, tasktemplate.Batch{Connector: "check", ID: "check", Attempt: 1,
		QueueTimeout: p.QueueTimeout, ExecutionTimeout: p.ExecutionTimeout}); err != nil {
		add("task.template", "%s: %v", t.Template, err)
		return p
	}
	p.Template = text
	return p
}

func (s *Spec) resolveRetry(add addFunc) workflows.TaskRetryPolicy {
	r := s.Retry
	p := workflows.TaskRetryPolicy{
		MaxAttempts:     DefaultMaxAttempts,
		InitialInterval: dur(r.InitialInterval, 5*time.Second),
		MaxInterval:     dur(r.MaxInterval, 5*time.Minute),
	}
	if n := r.MaxAttempts; n != nil {
		p.MaxAttempts = *n
		if *n < 1 {
			add("retry.max_attempts", "%d: use 1 (no retries) or more (leave it out for the default, %d)", *n, DefaultMaxAttempts)
		}
	}
	if p.InitialInterval <= 0 {
		add("retry.initial_interval", "%s: use a positive duration such as 5s", p.InitialInterval)
	}
	if p.MaxInterval < p.InitialInterval {
		add("retry.max_interval", "%s is below initial_interval %s", p.MaxInterval, p.InitialInterval)
	}
	return p
}

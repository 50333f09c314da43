package tasktemplate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	wasmmodels "github.com/bacalhau-project/bacalhau/pkg/executor/wasm/models"
	"github.com/bacalhau-project/bacalhau/pkg/lib/marshaller"
	bactemplate "github.com/bacalhau-project/bacalhau/pkg/lib/template"
	"github.com/bacalhau-project/bacalhau/pkg/models"
	"github.com/vincent-petithory/dataurl"
)

// MaxJobBytes is the largest encoded job Build accepts: 768 KiB, a margin
// under Bacalhau's 1 MiB NATS message limit (the job travels inside a larger
// message). Larger batches must be cut or staged in S3.
const MaxJobBytes = 768 << 10

// Labels and meta keys that Build puts on every job.
const (
	// LabelBatch carries a hash of (connector, batch, attempt): the key the
	// submit activity looks jobs up by, so a retried submit reuses the job.
	LabelBatch = "connect-batch"
	// LabelConnector carries the connector name (sanitized to label syntax).
	LabelConnector = "connect-connector"
	// MetaBatch, MetaConnector and MetaAttempt keep the raw identity.
	MetaBatch     = "connect.batch"
	MetaConnector = "connect.connector"
	MetaAttempt   = "connect.attempt"
	MetaEpoch     = "connect.epoch"
)

// Defaults applied when neither the batch nor the template sets a timeout.
const (
	DefaultQueueTimeout     = 10 * time.Minute
	DefaultExecutionTimeout = 5 * time.Minute
)

// Error is a template or batch problem found before submission. Field names
// what is wrong ("Tasks[0].Engine.Type", "inputs[2].target", "job size").
type Error struct {
	Field  string
	Reason string
}

func (e *Error) Error() string { return e.Field + ": " + e.Reason }

func fieldErr(field, format string, args ...any) *Error {
	return &Error{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Render fills {{.NAME}} placeholders in a template, as `bacalhau job run -V
// NAME=value` does. A placeholder without a value is an error.
func Render(text string, vars map[string]string) (string, error) {
	p, err := bactemplate.NewParser(bactemplate.ParserParams{Replacements: vars})
	if err != nil {
		return "", fmt.Errorf("template variables: %w", err)
	}
	out, err := p.Parse(text)
	if err != nil {
		return "", fmt.Errorf("template variables: %w", err)
	}
	return out, nil
}

var knownEngines = []string{models.EngineWasm, models.EngineDocker}

// IsWASM reports whether a rendered template's task runs on the wasm
// engine (false when the template does not parse).
func IsWASM(text string) bool {
	job, err := Parse(text)
	return err == nil && job.Tasks[0].Engine.Type == models.EngineWasm
}

// Parse decodes and checks a job template. Unknown fields are errors.
func Parse(text string) (*models.Job, error) {
	job, err := marshaller.UnmarshalJob([]byte(text))
	if err != nil {
		return nil, fieldErr("template", "not a valid Bacalhau job: %v", err)
	}
	if job.Type == "" {
		job.Type = models.JobTypeBatch
	}
	job.Normalize()
	if job.Type != models.JobTypeBatch && job.Type != models.JobTypeOps {
		return nil, fieldErr("Type", "%q jobs never finish; connectors run short tasks: use Type: batch", job.Type)
	}
	if len(job.Tasks) != 1 {
		return nil, fieldErr("Tasks", "want exactly one task, got %d", len(job.Tasks))
	}
	task := job.Tasks[0]
	if task.Engine == nil || task.Engine.Type == "" {
		return nil, fieldErr("Tasks[0].Engine.Type", "missing; use one of %s", strings.Join(knownEngines, ", "))
	}
	if !slices.Contains(knownEngines, task.Engine.Type) {
		return nil, fieldErr("Tasks[0].Engine.Type", "unknown engine %q; use one of %s", task.Engine.Type, strings.Join(knownEngines, ", "))
	}
	if task.Engine.Type == models.EngineWasm {
		spec, err := wasmmodels.DecodeSpec(task.Engine)
		if err != nil || spec.EntryModule == "" {
			return nil, fieldErr("Tasks[0].Engine.Params.EntryModule", "missing: name the Target of the input source that holds the .wasm module")
		}
		if !slices.ContainsFunc(task.InputSources, func(in *models.InputSource) bool { return in.Target == spec.EntryModule }) {
			return nil, fieldErr("Tasks[0].Engine.Params.EntryModule", "%q is not the Target of any input source; add an urlDownload input with that Target", spec.EntryModule)
		}
		if spec.Entrypoint == "" {
			// WASI programs start at _start; Bacalhau v1.7.0 does not default it.
			task.Engine.Params["Entrypoint"] = "_start"
		}
	}
	if err := job.ValidateSubmission(); err != nil {
		return nil, fieldErr("template", "%v", err)
	}
	return job, nil
}

// Input is one input source injected into the task.
type Input struct {
	// Target is the absolute path where the task sees the data, e.g. /inputs/a.log.
	Target string `json:"target"`
	// URL is fetched by the compute node (Bacalhau urlDownload: HEAD, then GET).
	URL string `json:"url,omitempty"`
	// Inline is small data carried in the job itself (a data: URL). Keep it
	// small: the whole job must stay under MaxJobBytes.
	Inline []byte `json:"inline,omitempty"`
	// S3 is read by the compute node with its own credentials (Bacalhau's
	// s3 input source).
	S3 *S3Object `json:"s3,omitempty"`
}

// S3Object is an object for Bacalhau's s3 input source.
type S3Object struct {
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
	Region   string `json:"region,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
}

// Batch is what Build adds to a template for one run.
type Batch struct {
	// Connector and ID name the batch; with Attempt they form its identity.
	Connector string
	ID        string
	Attempt   int
	// Epoch, when set, is part of the identity too (Key of ID~Epoch): it
	// tells batches of the same ID apart when records run again on
	// purpose (a stream consumer applied again, or its position reset).
	// Meta keeps the ID and the epoch apart.
	Epoch string
	// Indexed puts the job in a Bacalhau namespace of its own, named for
	// its identity (Namespace(key)), unless the template names a namespace
	// other than "default" (kept, e.g. for Bacalhau's namespace auth
	// policy): a lookup of the identity then reads that namespace's index
	// and its jobs only, where a label lookup reads every job the
	// orchestrator keeps (Bacalhau v1.7 decodes each to match labels).
	// `bacalhau job list` still shows every job, whatever its namespace.
	Indexed bool
	Inputs  []Input
	// Env is added to the task's environment (values, never secrets: use
	// Bacalhau's "env:HOST_VAR" references for those).
	Env map[string]string
	// Labels are added to the job's labels.
	Labels map[string]string
	// Meta is added to the job's meta, e.g. the batch's offsets.
	Meta map[string]string
	// QueueTimeout and ExecutionTimeout override the template's; when both
	// are zero the template's values apply, and then the defaults.
	QueueTimeout, ExecutionTimeout time.Duration
}

// Key is the value of LabelBatch for (connector, batch, attempt): a hash, so
// any batch ID fits Bacalhau's label syntax.
func Key(connector, batch string, attempt int) string {
	h := sha256.Sum256([]byte(connector + "\x00" + batch + "\x00" + strconv.Itoa(attempt)))
	return hex.EncodeToString(h[:16])
}

// Namespace is the Bacalhau namespace of an indexed batch's job
// (Batch.Indexed) whose template names none: one per batch key.
func Namespace(key string) string {
	return "connect-" + key
}

// LookupNamespace is where the job of the batch with this key and template
// is found: the namespace an indexed batch's job goes to, or "" (every
// namespace) for a batch that is not indexed or a template that does not
// parse.
func LookupNamespace(template, key string, indexed bool) string {
	if !indexed {
		return ""
	}
	job, err := Parse(template)
	if err != nil {
		return ""
	}
	if job.Namespace != models.DefaultNamespace {
		return job.Namespace
	}
	return Namespace(key)
}

// EpochID is a batch ID within an epoch: the ID itself when there is none.
func EpochID(id, epoch string) string {
	if epoch == "" {
		return id
	}
	return id + "~" + epoch
}

var labelUnsafe = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// LabelValue squeezes s into Bacalhau label-value syntax.
func LabelValue(s string) string {
	v := strings.Trim(labelUnsafe.ReplaceAllString(s, "-"), "-._")
	if len(v) > 63 {
		v = strings.Trim(v[:63], "-._")
	}
	if v == "" {
		v = "none"
	}
	return v
}

// Build parses the template and returns the job for one batch, checked and
// sized. Its name is derived from the batch identity.
func Build(template string, b Batch) (*models.Job, error) {
	if b.Connector == "" || b.ID == "" {
		return nil, fieldErr("batch", "connector and batch ID are required")
	}
	job, err := Parse(template)
	if err != nil {
		return nil, err
	}
	task := job.Tasks[0]
	for i, in := range b.Inputs {
		src, err := inputSource(i, in)
		if err != nil {
			return nil, err
		}
		task.InputSources = append(task.InputSources, src)
	}
	if len(b.Env) > 0 && task.Env == nil {
		task.Env = map[string]models.EnvVarValue{}
	}
	for k, v := range b.Env {
		task.Env[k] = models.EnvVarValue(v)
	}

	key := Key(b.Connector, EpochID(b.ID, b.Epoch), b.Attempt)
	if job.Labels == nil {
		job.Labels = map[string]string{}
	}
	for k, v := range b.Labels {
		job.Labels[k] = v
	}
	job.Labels[LabelBatch] = key
	job.Labels[LabelConnector] = LabelValue(b.Connector)
	if job.Meta == nil {
		job.Meta = map[string]string{}
	}
	for k, v := range b.Meta {
		job.Meta[k] = v
	}
	job.Meta[MetaConnector] = b.Connector
	job.Meta[MetaBatch] = b.ID
	job.Meta[MetaAttempt] = strconv.Itoa(b.Attempt)
	if b.Epoch != "" {
		job.Meta[MetaEpoch] = b.Epoch
	}
	job.Name = LabelValue(b.Connector) + "-" + key[:16]
	if b.Indexed && job.Namespace == models.DefaultNamespace {
		job.Namespace = Namespace(key)
	}

	applyTimeouts(task, b)
	job.Normalize()
	if err := job.ValidateSubmission(); err != nil {
		return nil, fieldErr("job", "%v", err)
	}
	size, err := EncodedSize(job)
	if err != nil {
		return nil, err
	}
	if size > MaxJobBytes {
		return nil, fieldErr("job size", "%d bytes encoded, over the %d-byte limit (Bacalhau's NATS messages are capped at 1 MiB); pass large inputs by URL or stage them in S3", size, MaxJobBytes)
	}
	return job, nil
}

// EncodedSize is the size of the job as JSON, as it travels to the node.
func EncodedSize(job *models.Job) (int, error) {
	raw, err := json.Marshal(job)
	if err != nil {
		return 0, fmt.Errorf("encoding job: %w", err)
	}
	return len(raw), nil
}

func inputSource(i int, in Input) (*models.InputSource, error) {
	field := fmt.Sprintf("inputs[%d]", i)
	if !path.IsAbs(in.Target) {
		return nil, fieldErr(field+".target", "%q must be an absolute path such as /inputs/batch.jsonl", in.Target)
	}
	set := 0
	for _, b := range []bool{in.URL != "", in.Inline != nil, in.S3 != nil} {
		if b {
			set++
		}
	}
	switch {
	case set > 1:
		return nil, fieldErr(field, "set one of url, inline and s3")
	case in.S3 != nil:
		if in.S3.Bucket == "" || in.S3.Key == "" {
			return nil, fieldErr(field+".s3", "bucket and key are required")
		}
		params := map[string]any{"Bucket": in.S3.Bucket, "Key": in.S3.Key}
		if in.S3.Region != "" {
			params["Region"] = in.S3.Region
		}
		if in.S3.Endpoint != "" {
			params["Endpoint"] = in.S3.Endpoint
		}
		return &models.InputSource{Source: &models.SpecConfig{Type: models.StorageSourceS3, Params: params}, Target: in.Target}, nil
	case in.URL != "":
		return &models.InputSource{
			Source: &models.SpecConfig{Type: models.StorageSourceURL, Params: map[string]any{"URL": in.URL}},
			Target: in.Target,
		}, nil
	case in.Inline != nil:
		return &models.InputSource{
			Source: &models.SpecConfig{Type: models.StorageSourceInline, Params: map[string]any{"URL": dataurl.EncodeBytes(in.Inline)}},
			Target: in.Target,
		}, nil
	default:
		return nil, fieldErr(field, "needs url, inline or s3")
	}
}

func applyTimeouts(task *models.Task, b Batch) {
	if task.Timeouts == nil {
		task.Timeouts = &models.TimeoutConfig{}
	}
	t := task.Timeouts
	if b.QueueTimeout > 0 {
		t.QueueTimeout = seconds(b.QueueTimeout)
	}
	if b.ExecutionTimeout > 0 {
		t.ExecutionTimeout = seconds(b.ExecutionTimeout)
	}
	if t.QueueTimeout <= 0 {
		t.QueueTimeout = seconds(DefaultQueueTimeout)
	}
	if t.ExecutionTimeout <= 0 {
		t.ExecutionTimeout = seconds(DefaultExecutionTimeout)
	}
	// TotalTimeout must be 0 or at least queue + execution; 0 leaves the
	// bound to the two above.
	if t.TotalTimeout != 0 && t.TotalTimeout < t.QueueTimeout+t.ExecutionTimeout {
		t.TotalTimeout = 0
	}
}

func seconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// Timeouts returns the queue and execution timeouts a built job carries.
func Timeouts(job *models.Job) (queue, execution time.Duration) {
	t := job.Task().Timeouts
	if t == nil {
		return 0, 0
	}
	return time.Duration(t.QueueTimeout) * time.Second, time.Duration(t.ExecutionTimeout) * time.Second
}

package workflows

import (
	"errors"
	"fmt"
	"time"
	// Embedded zone data: a schedule resolves the same on every worker and on replay.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"

	"github.com/bacalhau-connect/bacalhau-connect/activities"
)

// CronConfig is a cron connector's resolved configuration: what
// `starter apply` sends after validating the YAML spec (internal/spec). It
// holds no secrets.
type CronConfig struct {
	Name     string
	Schedule string
	Timezone string `json:",omitempty"`
	Source   S3Source
	// MaxObjects and MaxBytes bound one batch.
	MaxObjects int
	MaxBytes   int64
	// MaxFolderEntries, when positive, also bounds the entries of any one
	// folder of a batch's /inputs tree (activities.FolderEntries says why
	// WASM tasks need it). Zero: no bound.
	MaxFolderEntries int `json:",omitempty"`
	// Concurrency is how many batches of a tick run at once (0 or 1: one
	// at a time). The shared budget still caps jobs in flight overall.
	Concurrency int `json:",omitempty"`
	// TaskConfig is what runs per batch (its fields are promoted, in Go
	// and in JSON).
	TaskConfig
	Overlap       string
	CatchupWindow time.Duration
	DeadLetter    *S3Location `json:",omitempty"`
}

// TaskConfig is what every connector runs for a batch.
type TaskConfig struct {
	// Template is the rendered Bacalhau job YAML.
	Template         string
	Delivery         string        `json:",omitempty"`
	URLTTL           time.Duration `json:",omitempty"`
	QueueTimeout     time.Duration `json:",omitempty"`
	ExecutionTimeout time.Duration `json:",omitempty"`
	Retry            TaskRetryPolicy
}

// S3Source is the objects a cron connector scans.
type S3Source struct {
	Bucket, Prefix, Region, Endpoint string
	StartAfter                       string    `json:",omitempty"`
	StartTime                        time.Time `json:",omitempty"`
	Lookback                         time.Duration
}

// S3Location is a bucket and key prefix.
type S3Location struct {
	Bucket, Prefix, Region, Endpoint string
}

// cronParser accepts 5-field expressions and descriptors (@every 5m, @hourly).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a schedule in a time zone ("" is UTC).
func ParseSchedule(expr, tz string) (cron.Schedule, error) {
	loc := time.UTC
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			return nil, fmt.Errorf("unknown time zone %q", tz)
		}
		loc = l
	}
	s, err := cronParser.Parse(expr)
	if err != nil {
		return nil, err
	}
	if spec, ok := s.(*cron.SpecSchedule); ok {
		spec.Location = loc
	}
	return s, nil
}

// Validate checks what a running workflow relies on; the starter's spec
// validation (internal/spec) is a superset, with YAML paths.
func (c CronConfig) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name: required"))
	}
	if _, err := ParseSchedule(c.Schedule, c.Timezone); err != nil {
		errs = append(errs, fmt.Errorf("schedule: %v", err))
	}
	if c.Source.Bucket == "" {
		errs = append(errs, errors.New("source.s3.bucket: required"))
	}
	if c.MaxObjects < 1 || c.MaxBytes < 1 {
		errs = append(errs, errors.New("batch: max_objects and max_bytes must be positive"))
	}
	if c.MaxFolderEntries < 0 {
		errs = append(errs, fmt.Errorf("batch.max_folder_entries: %d: use a positive number, or leave it out", c.MaxFolderEntries))
	}
	if c.Concurrency < 0 || c.Concurrency > MaxCronConcurrency {
		errs = append(errs, fmt.Errorf("batch.concurrency: %d: use 1 to %d", c.Concurrency, MaxCronConcurrency))
	}
	if c.Template == "" {
		errs = append(errs, errors.New("task.template: required"))
	}
	if c.Delivery != "" && c.Delivery != activities.DeliveryGateway && c.Delivery != activities.DeliveryS3 {
		errs = append(errs, fmt.Errorf("task.input.delivery: unknown %q", c.Delivery))
	}
	if c.Overlap != OverlapSkip && c.Overlap != OverlapBufferOne {
		errs = append(errs, fmt.Errorf("overlap: unknown %q", c.Overlap))
	}
	if c.Source.Lookback < 0 || c.CatchupWindow < 0 {
		errs = append(errs, errors.New("lookback and catchup_window must not be negative"))
	}
	return errors.Join(errs...)
}

// MaxCronConcurrency bounds CronConfig.Concurrency.
const MaxCronConcurrency = 32

// Overlap policies.
const (
	OverlapSkip      = "skip"
	OverlapBufferOne = "buffer_one"
)

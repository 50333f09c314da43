package spec

import (
	"github.com/bacalhau-connect/bacalhau-connect/source"
	"github.com/bacalhau-connect/bacalhau-connect/workflows"
)

// QueueKindOf is the workflow names of a source queue kind.
func QueueKindOf(k source.QueueKind) workflows.SourceKind {
	connector, prefix := k.Types()
	return workflows.SourceKind{Kind: k.Name, ConnectorType: connector, IDPrefix: prefix}
}

// resolveQueueKind decodes a source queue kind's section into its
// configuration, has the kind check it (problems at source.<kind>.<field>),
// and resolves what the engine takes from the rest of the spec: batch
// (max_messages, max_wait, concurrency) and the task, as for sqs.
func (s *Spec) resolveQueueKind(k source.QueueKind, dir string, add addFunc) *workflows.SourceQueueConfig {
	cfg := &workflows.SourceQueueConfig{Name: s.Name, SourceKind: QueueKindOf(k)}
	conf := k.NewConfig()
	if raw, ok := s.decodeSourceSection(k.Name, conf, add); ok {
		cfg.Source, cfg.Describe, cfg.Lease = raw, conf.Describe(), conf.Lease()
	}
	cfg.MaxMessages = intInRange(add, "batch.max_messages", s.Batch.MaxMessages, DefaultMaxMessages, 1, workflows.MaxQueueMessages)
	cfg.MaxWait = dur(s.Batch.MaxWait, DefaultQueueMaxWait)
	if cfg.MaxWait <= 0 {
		add("batch.max_wait", "%s: use a positive duration such as 5s", cfg.MaxWait)
	}
	cfg.Concurrency = intInRange(add, "batch.concurrency", s.Batch.Concurrency, DefaultQueueConcurrency, 1, workflows.MaxQueueConcurrency)
	if r := s.Retry; r.MaxAttempts != nil || r.InitialInterval != nil || r.MaxInterval != nil {
		add("retry", "%s connectors do not retry tasks themselves: a failed batch's messages go back to the queue, and its dead-letter policy moves a message that keeps failing to its dead-letter topic; remove retry", k.Name)
	}
	cfg.TaskConfig = s.resolveTask(dir, add)
	return cfg
}

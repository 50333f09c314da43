// Package source is the public API for connector sources: what a source
// outside this repository implements so that bacalhau-connect's engine can
// turn it into short Bacalhau tasks with the same guarantees as the
// built-in kinds.
//
// # What a source writes
//
// A source is plain Go that talks to the system it reads: list its units,
// resolve a start position, read a range of records, wait for records,
// report where the end is. It runs inside Temporal activities the engine
// owns. It never writes workflow code: batch identity, several batches in
// flight, retries, bisection, dead letters, checkpoints, leases and the
// controls (pause, resume, reset) are the engine's, and they replay
// deterministically whatever the source does.
//
// # Streams
//
// A [Stream] is ordered units (Kafka partitions, Kinesis shards, NATS
// JetStream subjects) whose records have ordered positions. A batch is a
// range of positions; reading the same range again returns the same
// records, which is what makes a batch's identity, and therefore an
// idempotent submit, possible. A range may hold fewer records than its
// width (a subject filter skips the stream's other sequence numbers).
//
// # Queues
//
// A [Queue] leases messages to one reader at a time (SQS, Pub/Sub): the
// engine keeps the leases of a batch up while its task runs, acks what the
// task processed and releases the rest; the queue's own dead-letter policy
// counts the deliveries of a message that keeps failing.
//
// # Kinds
//
// A [StreamKind] or a [QueueKind] registers a source as a connector kind:
// its name (the spec's kind and source section), a configuration type the
// section decodes into and checks itself, and an opener the worker calls.
// Package sdk builds the worker and starter binaries with extra kinds.
//
// # Status
//
// This package is new (issue #18). Inside this repository a NATS
// JetStream reader implements [Stream] and a Google Cloud Pub/Sub
// subscription reader implements [Queue], each registered as a kind the
// way another module registers one; examples/sources/dirtail is a stream
// kind in a module of its own (docs/write-a-source.md).
package source

package source

import (
	"context"
	"time"
)

// Queue is a queue source: each message is leased to one reader at a time
// and settled on its own. The engine receives a batch, keeps the leases up
// while the batch's task runs, acks what the task processed and releases
// the rest; the queue's own dead-letter policy (SQS redrive, Pub/Sub
// dead-letter topic) counts the deliveries of a message that keeps failing.
type Queue interface {
	// Receive waits up to wait for messages and returns at most max, each
	// leased for lease: no other reader gets it until the lease ends, it is
	// released, or acked. What is there is returned at once.
	Receive(ctx context.Context, max int, lease, wait time.Duration) ([]Message, error)
	// Extend renews the leases of the messages with these handles to
	// lease from now.
	Extend(ctx context.Context, handles []string, lease time.Duration) error
	// Ack settles the messages as processed: the queue drops them.
	Ack(ctx context.Context, handles []string) error
	// Release gives the messages back for delivery now.
	Release(ctx context.Context, handles []string) error
}

// Message is one delivery of a queue message.
type Message struct {
	// ID is the message's own ID, the same in every delivery (a batch's
	// identity is built from its messages' IDs).
	ID string
	// Handle names this delivery for Extend, Ack and Release (an SQS
	// receipt handle, a Pub/Sub ack ID).
	Handle string
	// Body is the payload.
	Body []byte
	// Attributes are the message's attributes, if any.
	Attributes map[string]string
	// OrderingKey groups messages the queue delivers in order (an SQS FIFO
	// message group, a Pub/Sub ordering key); "" for none.
	OrderingKey string
	// Deliveries counts this message's deliveries, this one included (0:
	// the queue does not count them).
	Deliveries int
	// Published is when the queue took the message.
	Published time.Time
}

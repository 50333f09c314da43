package kinds

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
)

// queryStatus asks a connector workflow's status query and decodes the
// answer, naming the likely cause when it cannot be decoded.
func queryStatus[T any](ctx context.Context, c client.Client, name, workflowID, query string) (*T, error) {
	v, err := c.QueryWorkflow(ctx, workflowID, "", query)
	if err != nil {
		return nil, ConnectorError(name, "", err)
	}
	var st T
	if err := v.Get(&st); err != nil {
		return nil, fmt.Errorf("connector %s: decoding the %s query of %s: %w (if the workers encrypt history, give the starter the same --codec-key-file)", name, query, workflowID, err)
	}
	return &st, nil
}

// IsNotFound is Temporal's answer for a workflow that is not there.
func IsNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}

// ConnectorError words an error of operation op (a verb; "" for none) on
// connector name, telling a missing connector apart.
func ConnectorError(name, op string, err error) error {
	if IsNotFound(err) {
		return fmt.Errorf("connector %s: %w", name, ErrNotFound)
	}
	if op == "" {
		return fmt.Errorf("connector %s: %w", name, err)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

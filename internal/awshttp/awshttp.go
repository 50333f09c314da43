// Package awshttp holds the HTTP client AWS SDK clients of this project
// use.
package awshttp

import (
	"bytes"
	"io"
	"net/http"
)

// BufferedClient is an HTTP client that reads each request body into
// memory before sending it: aws-sdk-go-v2 issues #1825/#2737 ("use of closed
// network connection" on about 1 in 1,000 requests) go away with it, as
// DESIGN.md §5 measured. Correctness never depends on it.
func BufferedClient() *http.Client {
	return &http.Client{Transport: bufferedTransport{next: http.DefaultTransport}}
}

type bufferedTransport struct{ next http.RoundTripper }

func (t bufferedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			return nil, err
		}
		r = r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return t.next.RoundTrip(r)
}

package devstack

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// FreePort asks the kernel for a free TCP port on 127.0.0.1. Another process
// may take the port before it is used; callers start the service right away.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portOr returns p when it is set, else a free port.
func portOr(p int) (int, error) {
	if p > 0 {
		return p, nil
	}
	return FreePort()
}

// waitHTTP polls url until it answers with a status below 500 or the timeout passes.
func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	var lastErr error
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s: %w", url, timeout, lastErr)
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bacalhau-connect/bacalhau-connect/internal/codec"
)

// devCodec is make dev's payload codec (--codec): a key under the run
// folder and a codec server the Temporal UI calls.
type devCodec struct {
	keyFile string
	url     string
	stop    context.CancelFunc
}

// startDevCodec makes (once) run/codec.key and serves /encode and /decode
// on port for any origin (the dev UI's port may be chosen at random).
func startDevCodec(runDir string, port int) (*devCodec, error) {
	keyFile := filepath.Join(runDir, "codec.key")
	if _, err := os.Stat(keyFile); errors.Is(err, os.ErrNotExist) {
		key := make([]byte, codec.KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	c, err := codec.LoadKeyFile(keyFile)
	if err != nil {
		return nil, err
	}
	srv, err := codec.Listen(fmt.Sprintf("127.0.0.1:%d", port), c, codec.ServerOptions{AllowOrigins: []string{"*"}})
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	go func() { _ = srv.Serve(ctx) }()
	return &devCodec{keyFile: keyFile, url: srv.URL, stop: stop}, nil
}

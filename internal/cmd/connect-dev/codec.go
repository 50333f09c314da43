package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/bacalhau-connect/bacalhau-connect/internal/codec"
)

// devCodec is make dev's payload codec (--codec): a key under the run
// folder and a codec server the Temporal UI calls.
type devCodec struct {
	keyFile string
	url     string
	srv     *http.Server
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
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, fmt.Errorf("codec server: %w", err)
	}
	srv := &http.Server{Handler: codec.NewHandler(c, codec.ServerOptions{AllowOrigins: []string{"*"}}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &devCodec{keyFile: keyFile, url: "http://" + ln.Addr().String(), srv: srv}, nil
}

func (d *devCodec) stop() { _ = d.srv.Close() }

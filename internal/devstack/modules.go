package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// ModuleServer serves the files of one folder over HTTP so that Bacalhau
// compute nodes can fetch WASM task modules with urlDownload inputs (which
// send HEAD, then GET). Jobs reference modules by URL: inlined modules would
// break Bacalhau's 1 MiB NATS message limit (DESIGN.md §3).
type ModuleServer struct {
	dir    string
	server *http.Server
	url    string
	done   chan struct{}
}

// StartModuleServer serves dir on 127.0.0.1:port (a free port when 0).
func StartModuleServer(dir string, port int, errorLog io.Writer) (*ModuleServer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("modules: creating %s: %w", dir, err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("modules: listening on port %d: %w", port, err)
	}
	if errorLog == nil {
		errorLog = io.Discard
	}
	m := &ModuleServer{
		dir: dir,
		server: &http.Server{
			Handler:           http.FileServer(http.Dir(dir)),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          log.New(errorLog, "modules: ", log.LstdFlags),
		},
		url:  "http://" + l.Addr().String(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(m.done)
		if err := m.server.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.server.ErrorLog.Printf("serve: %v", err)
		}
	}()
	if err := waitHTTP(m.url+"/", 5*time.Second); err != nil {
		_ = m.Stop()
		return nil, fmt.Errorf("modules: %w", err)
	}
	return m, nil
}

// URL is the base URL; a module file NAME is at URL()+"/"+NAME.
func (m *ModuleServer) URL() string { return m.url }

// Dir is the folder served.
func (m *ModuleServer) Dir() string { return m.dir }

// Stop shuts the server down.
func (m *ModuleServer) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := m.server.Shutdown(ctx)
	<-m.done
	if err != nil {
		return fmt.Errorf("modules: shutting down: %w", err)
	}
	return nil
}

// BuildWASM compiles the Go main package at pkgDir for WASI (GOOS=wasip1
// GOARCH=wasm) into out. The module is not stripped: Bacalhau refuses a
// module without its name section. The build is skipped when out is newer
// than every .go file in pkgDir.
func BuildWASM(ctx context.Context, pkgDir, out string) error {
	if fresh, err := upToDate(pkgDir, out); err == nil && fresh {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("building %s: %w", out, err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s from %s: %w\n%s", out, pkgDir, err, msg)
	}
	return nil
}

func upToDate(pkgDir, out string) (bool, error) {
	o, err := os.Stat(out)
	if err != nil {
		return false, err
	}
	srcs, err := filepath.Glob(filepath.Join(pkgDir, "*.go"))
	if err != nil {
		return false, err
	}
	for _, s := range srcs {
		st, err := os.Stat(s)
		if err != nil {
			return false, err
		}
		if st.ModTime().After(o.ModTime()) {
			return false, nil
		}
	}
	return len(srcs) > 0, nil
}

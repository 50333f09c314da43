// Package dirtail is a source kind written outside bacalhau-connect's
// module, against its public API only: it tails the files of a local
// directory, one unit per file, one record per line. It shows what a
// third party writes to add a kind — a configuration that checks itself,
// and a source.Stream — and cmd/worker and cmd/starter build the two
// binaries with it (sdk.RunWorker, sdk.RunStarter).
//
// Positions are line numbers (the first line is 1); only complete lines
// (ending in a newline) are records, so a line being written is read once
// it is whole. Files are taken to be append-only: a file truncated or
// replaced under the connector is not followed.
package dirtail

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/bacalhau-connect/bacalhau-connect/source"
)

// Config is the spec's source.dirtail section.
type Config struct {
	// Dir is the directory to tail, an absolute path on the worker.
	Dir string `yaml:"dir"`
	// Pattern picks the files of Dir to tail (filepath.Match). Default
	// *.log.
	Pattern string `yaml:"pattern" json:",omitempty"`
	// Start is earliest (default: each file from its first line) or
	// latest (only lines written after the connector started).
	Start string `yaml:"start" json:",omitempty"`
}

// Kind is the dirtail connector kind.
func Kind() source.StreamKind {
	return source.StreamKind{Name: "dirtail", Units: "files", NewConfig: func() source.StreamConfig { return &Config{} }, Open: Open}
}

// Check checks the section.
func (c *Config) Check() []source.Problem {
	var ps []source.Problem
	switch {
	case c.Dir == "":
		ps = append(ps, source.Problem{Field: "dir", Message: "required: the directory to tail, such as /var/log/app"})
	case !filepath.IsAbs(c.Dir):
		ps = append(ps, source.Problem{Field: "dir", Message: fmt.Sprintf("%q is relative: write an absolute path (the worker reads it)", c.Dir)})
	}
	if _, err := filepath.Match(c.pattern(), ""); err != nil {
		ps = append(ps, source.Problem{Field: "pattern", Message: fmt.Sprintf("%q is not a file pattern: %v", c.Pattern, err)})
	}
	switch c.Start {
	case "", "earliest", "latest":
	default:
		ps = append(ps, source.Problem{Field: "start", Message: fmt.Sprintf("unknown %q: use earliest or latest", c.Start)})
	}
	return ps
}

// Describe says what the connector reads.
func (c *Config) Describe() string { return fmt.Sprintf("files %s in %s", c.pattern(), c.Dir) }

// StartAt is where a file without a checkpoint starts.
func (c *Config) StartAt() source.StartAt {
	if c.Start == "latest" {
		return source.Latest
	}
	return source.Earliest
}

func (c *Config) pattern() string {
	if c.Pattern == "" {
		return "*.log"
	}
	return c.Pattern
}

// Source tails a directory's files. It keeps where each file's lines start,
// so a read seeks to its first line instead of scanning the file.
type Source struct {
	cfg Config
	mu  sync.Mutex
	// starts[file] are the offsets of its complete lines (line n starts at
	// starts[n-1]), and end where the last complete line ends.
	starts map[string][]int64
	ends   map[string]int64
}

// Open is the kind's source.StreamOpener.
func Open(_ context.Context, config json.RawMessage) (source.Stream, error) {
	var cfg Config
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("dirtail: decoding the configuration: %w", err)
	}
	return &Source{cfg: cfg, starts: map[string][]int64{}, ends: map[string]int64{}}, nil
}

// Units are the files of the directory that match the pattern, sorted.
func (s *Source) Units(context.Context) ([]string, error) {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("dirtail: %w", err)
	}
	var units []string
	for _, e := range entries {
		if ok, _ := filepath.Match(s.cfg.pattern(), e.Name()); ok && e.Type().IsRegular() {
			units = append(units, e.Name())
		}
	}
	slices.Sort(units)
	return units, nil
}

// index brings the file's line index up to date and returns the number
// of complete lines.
func (s *Source) index(unit string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.Open(filepath.Join(s.cfg.Dir, filepath.Base(unit)))
	if err != nil {
		return 0, fmt.Errorf("dirtail: %w", err)
	}
	defer func() { _ = f.Close() }()
	end := s.ends[unit]
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		return 0, fmt.Errorf("dirtail: %w", err)
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			break // a partial line is not a record yet
		}
		if err != nil {
			return 0, fmt.Errorf("dirtail: %w", err)
		}
		s.starts[unit] = append(s.starts[unit], end)
		end += int64(len(line))
	}
	s.ends[unit] = end
	return len(s.starts[unit]), nil
}

// Start is line 1 (earliest), the line after the last complete one
// (latest), or, for a time, line 1 when the file changed at or after it.
func (s *Source) Start(_ context.Context, unit string, at source.StartAt) (uint64, error) {
	n, err := s.index(unit)
	if err != nil {
		return 0, err
	}
	switch at.From {
	case source.Earliest.From:
		return 1, nil
	case "time":
		if fi, err := os.Stat(filepath.Join(s.cfg.Dir, filepath.Base(unit))); err == nil && !fi.ModTime().Before(at.Time) {
			return 1, nil
		}
	}
	return uint64(n) + 1, nil
}

// Read reads lines from..until (0: no bound) within lim, waiting up to
// lim.MaxWait for the first line of an open read.
func (s *Source) Read(ctx context.Context, unit string, from, until uint64, lim source.Limits) (source.Records, error) {
	var out source.Records
	from = max(from, 1)
	n, err := s.index(unit)
	if err != nil {
		return out, err
	}
	for deadline := time.Now().Add(lim.MaxWait); uint64(n) < from && until == 0 && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if n, err = s.index(unit); err != nil {
			return out, err
		}
	}
	last := uint64(n)
	if until > 0 && until < last {
		last = until
	}
	if from > last {
		out.Covered = until > 0 && uint64(n) >= until
		return out, nil
	}
	path := filepath.Join(s.cfg.Dir, filepath.Base(unit))
	f, err := os.Open(path)
	if err != nil {
		return out, fmt.Errorf("dirtail: %w", err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return out, fmt.Errorf("dirtail: %w", err)
	}
	s.mu.Lock()
	offset := s.starts[unit][from-1]
	s.mu.Unlock()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return out, fmt.Errorf("dirtail: %w", err)
	}
	r := bufio.NewReader(f)
	var bytes int64
	for pos := from; pos <= last && len(out.Items) < lim.MaxRecords; pos++ {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return out, fmt.Errorf("dirtail: %s line %d: %w", unit, pos, err)
		}
		rec := source.Record{Position: pos, Key: unit, Value: line[:len(line)-1], Time: fi.ModTime()}
		if len(out.Items) > 0 && bytes+rec.Size() > lim.MaxBytes {
			break
		}
		out.Items = append(out.Items, rec)
		bytes += rec.Size()
	}
	got := out.Items[len(out.Items)-1].Position
	out.Backlog = got < uint64(n)
	out.Covered = until > 0 && got >= until
	return out, nil
}

// Wait polls the file until it has a complete line at or after from.
func (s *Source) Wait(ctx context.Context, unit string, from uint64, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		n, err := s.index(unit)
		if err != nil {
			return false, err
		}
		if uint64(n) >= max(from, 1) {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Pending counts the complete lines at or after from.
func (s *Source) Pending(_ context.Context, unit string, from uint64) (uint64, error) {
	n, err := s.index(unit)
	if err != nil {
		return 0, err
	}
	if uint64(n) < max(from, 1) {
		return 0, nil
	}
	return uint64(n) - max(from, 1) + 1, nil
}

package dirtail

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bacalhau-connect/bacalhau-connect/source"
)

func open(t *testing.T, dir string) source.Stream {
	t.Helper()
	raw, err := json.Marshal(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

func values(rs source.Records) string {
	var v []string
	for _, r := range rs.Items {
		v = append(v, string(r.Value))
	}
	return strings.Join(v, ",")
}

// TestLinesAreRecordsByLineNumber reads files by line ranges: complete
// lines only, the same range twice alike, limits, coverage and lag.
func TestLinesAreRecordsByLineNumber(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	appendTo(t, filepath.Join(dir, "b.log"), "b1\nb2\n")
	appendTo(t, filepath.Join(dir, "a.log"), "a1\na2\na3\na4\na5\npartial")
	appendTo(t, filepath.Join(dir, "skip.txt"), "x\n")
	s := open(t, dir)

	units, err := s.Units(ctx)
	if err != nil || strings.Join(units, ",") != "a.log,b.log" {
		t.Fatalf("units %v, %v: want a.log,b.log", units, err)
	}
	lim := source.Limits{MaxRecords: 3, MaxBytes: 1 << 20, MaxWait: 10 * time.Millisecond}
	rs, err := s.Read(ctx, "a.log", 1, 0, lim)
	if err != nil || values(rs) != "a1,a2,a3" || !rs.Backlog {
		t.Fatalf("open read: %q backlog %v, %v", values(rs), rs.Backlog, err)
	}
	wide := source.Limits{MaxRecords: 100, MaxBytes: 1 << 20, MaxWait: time.Hour}
	r1, _ := s.Read(ctx, "a.log", 2, 4, wide)
	r2, _ := s.Read(ctx, "a.log", 2, 4, wide)
	if values(r1) != "a2,a3,a4" || values(r2) != values(r1) || !r1.Covered {
		t.Fatalf("range 2..4: %q then %q, covered %v", values(r1), values(r2), r1.Covered)
	}
	if part, _ := s.Read(ctx, "a.log", 2, 4, source.Limits{MaxRecords: 1, MaxBytes: 1 << 20, MaxWait: time.Hour}); part.Covered || values(part) != "a2" {
		t.Fatalf("a range a limit stops short of: %q covered %v", values(part), part.Covered)
	}
	if p, _ := s.Pending(ctx, "a.log", 4); p != 2 {
		t.Fatalf("pending from line 4: %d, want 2 (the partial line is not a record)", p)
	}
	// The partial line becomes a record once it is whole; waits see it.
	if has, _ := s.Wait(ctx, "a.log", 6, 50*time.Millisecond); has {
		t.Fatal("line 6 is not whole yet")
	}
	appendTo(t, filepath.Join(dir, "a.log"), " now whole\n")
	if has, _ := s.Wait(ctx, "a.log", 6, time.Second); !has {
		t.Fatal("line 6 is whole")
	}
	if rs, _ := s.Read(ctx, "a.log", 6, 0, lim); values(rs) != "partial now whole" || rs.Backlog {
		t.Fatalf("line 6: %q backlog %v", values(rs), rs.Backlog)
	}
	if at, _ := s.Start(ctx, "b.log", source.Latest); at != 3 {
		t.Fatalf("latest of b.log: %d, want 3", at)
	}
	if none, _ := s.Read(ctx, "b.log", 3, 0, lim); len(none.Items) != 0 {
		t.Fatalf("nothing after the end: %q", values(none))
	}
}

func TestConfigChecksItself(t *testing.T) {
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{}, "dir"},
		{Config{Dir: "logs"}, "dir"},
		{Config{Dir: "/l", Pattern: "[x"}, "pattern"},
		{Config{Dir: "/l", Start: "oldest"}, "start"},
	} {
		ps := tc.cfg.Check()
		if len(ps) != 1 || ps[0].Field != tc.field {
			t.Errorf("%+v: problems %+v, want one at %s", tc.cfg, ps, tc.field)
		}
	}
	if ps := (&Config{Dir: "/var/log/app"}).Check(); len(ps) != 0 {
		t.Errorf("a good config: %+v", ps)
	}
}

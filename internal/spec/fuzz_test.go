package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the spec decoder and validator. Load
// must never panic; it refuses with problems that each name a YAML path
// and a message; and a spec it accepts is one the connector's workflow
// accepts too (spec validation is a superset of the workflows').
func FuzzLoad(f *testing.F) {
	dir := filepath.Join("..", "..", "examples", "connectors")
	entries, err := os.ReadDir(dir)
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte("name: x\nkind: cron\n"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := Load(filepath.Join(dir, "fuzz.yaml"), raw)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || len(se.Problems) == 0 {
				t.Fatalf("Load refused without problems: %v", err)
			}
			for _, p := range se.Problems {
				if strings.TrimSpace(p.Path) == "" || strings.TrimSpace(p.Message) == "" {
					t.Fatalf("a problem without a path or message: %+v", p)
				}
			}
			return
		}
		switch {
		case r.Cron != nil:
			err = r.Cron.Validate()
		case r.Kafka != nil:
			err = r.Kafka.Validate()
		case r.Queue != nil:
			err = r.Queue.Validate()
		case r.Kinesis != nil:
			err = r.Kinesis.Validate()
		case r.SourceStream != nil:
			err = r.SourceStream.Validate()
		case r.SourceQueue != nil:
			err = r.SourceQueue.Validate()
		default:
			t.Fatalf("Load accepted a spec of no kind:\n%s", raw)
		}
		if err != nil {
			t.Fatalf("Load accepted a spec its workflow refuses: %v\n%s", err, raw)
		}
	})
}

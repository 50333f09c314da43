package dirtail

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bacalhau-connect/bacalhau-connect/sdk"
)

// TestTheStarterChecksDirtailSpecs runs the SDK's starter with the kind:
// the example spec is valid; a spec with a mistake in the kind's section
// is refused naming the field, whether the spec's decoder or the kind's
// own Check finds it. --dry-run needs no Temporal.
func TestTheStarterChecksDirtailSpecs(t *testing.T) {
	apply := func(path string) (string, error) {
		var out, errOut bytes.Buffer
		err := sdk.RunStarter(context.Background(), []string{"apply", "--dry-run", "-f", path}, &out, &errOut, Kind())
		return out.String() + errOut.String(), err
	}
	out, err := apply("app-logs.yaml")
	if err != nil || !strings.Contains(out, "connector app-logs: dirtail spec is valid (workflow dirtail-app-logs)") {
		t.Fatalf("the example spec: %v\n%s", err, out)
	}
	raw, err := os.ReadFile("app-logs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	template, err := filepath.Abs("../../jobs/logsummary.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ old, new, want string }{
		{`pattern: "*.log"`, `pattren: "*.log"`, "source.dirtail.pattren: unknown field: did you mean pattern?"},
		{"dir: /var/log/app", "dir: logs", `source.dirtail.dir: "logs" is relative`},
		{"start: earliest", "start: oldest", `source.dirtail.start: unknown "oldest"`},
	} {
		text := strings.Replace(strings.Replace(string(raw), tc.old, tc.new, 1), "../../jobs/logsummary.yaml", template, 1)
		path := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := apply(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.new, err, tc.want)
		}
	}
}

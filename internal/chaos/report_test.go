package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// summaryPaths are the request paths a task read (-list-paths).
func summaryPaths(raw []byte) ([]string, error) {
	if raw == nil {
		return nil, errors.New("no outputs/summary.json")
	}
	var s struct {
		Paths []string `json:"paths"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("summary.json: %w", err)
	}
	return s.Paths, nil
}

// renderReport is the run's result as Markdown: per kind the ledger, per
// fault the time each kind took to complete a task again.
func renderReport(cfg config, kinds []*kind, results map[string]*kindResult, faults []*fault, elapsed time.Duration) string {
	var b strings.Builder
	mode := "short (make test)"
	if cfg.long {
		mode = "long (make chaos)"
	}
	fmt.Fprintf(&b, "# Chaos results\n\nSeed %d, %s run, %s, on %s (%d CPUs, %s/%s). Two worker processes on one task queue.\n\n",
		cfg.seed, mode, elapsed.Round(time.Second), hostLine(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "Each kind's source gets %d record(s) every %s while the faults run; each record is one log line whose path is its mark. "+
		"A poison fault makes the next record of every kind one the task exits 3 on; a slow fault one it sleeps on for 10 s, past its 8 s execution timeout.\n\n",
		cfg.perWave, cfg.wave)
	b.WriteString("## Records\n\n| kind | in | processed once | processed twice | lost | dead-lettered | of them poison or slow |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range kinds {
		r := results[k.name]
		if r == nil {
			fmt.Fprintf(&b, "| %s | – | – | – | – | – | – |\n", k.name)
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d |\n", k.name, r.in, r.once, r.twice, r.lost, r.dead, r.taggedDead)
	}
	b.WriteString("\nCron dead-letters whole batches (it does not bisect): a poison object's batch mates are dead-lettered with it.\n\n")
	b.WriteString("## Faults\n\nRecovery: from the end of the fault (a kill: from the kill, with the other worker still up) until the kind completed a task again; `idle`: it had no record waiting; `stalled`: no task within " +
		cfg.recoverCap.String() + ".\n\n| # | at | fault | down |")
	for _, k := range kinds {
		fmt.Fprintf(&b, " %s |", k.name)
	}
	b.WriteString("\n|---:|---:|---|---:|" + strings.Repeat("---:|", len(kinds)) + "\n")
	for i, f := range faults {
		fmt.Fprintf(&b, "| %d | %s | %s | %s |", i+1, f.at.Round(time.Second), f.what, f.dur.Round(100*time.Millisecond))
		for _, k := range kinds {
			fmt.Fprintf(&b, " %s |", recoveryCell(f, k.name))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n## Recovery by fault type (worst)\n\n| fault |")
	for _, k := range kinds {
		fmt.Fprintf(&b, " %s |", k.name)
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(kinds)) + "\n")
	var types []string
	for _, f := range faults {
		if ty := faultType(f.what); !slices.Contains(types, ty) {
			types = append(types, ty)
		}
	}
	for _, ty := range types {
		fmt.Fprintf(&b, "| %s |", ty)
		for _, k := range kinds {
			worst, stalled := time.Duration(0), false
			for _, f := range faults {
				if faultType(f.what) != ty {
					continue
				}
				stalled = stalled || f.stalled[k.name]
				worst = max(worst, f.recovery[k.name])
			}
			cell := worst.Round(100 * time.Millisecond).String()
			if stalled {
				cell = "stalled"
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func recoveryCell(f *fault, name string) string {
	if f.stalled[name] {
		return "stalled"
	}
	if f.idle[name] {
		return "idle"
	}
	d, ok := f.recovery[name]
	if !ok {
		return "–"
	}
	return d.Round(100 * time.Millisecond).String()
}

// faultType drops a kill's worker number.
func faultType(what string) string {
	if strings.HasPrefix(what, "kill -9") {
		return "kill -9 of a worker"
	}
	return what
}

// hostLine is the CPU model, as BENCHMARKS.md names the machine.
func hostLine() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// Command benchplot draws BENCHMARKS.md's plots from the benchmark result
// tables (internal/bench/results/*.md): throughput against batch size
// (Kafka records per batch, SQS messages per task) and freshness (Kinesis
// p50/p99 by shards and mode). `make bench` runs it after writing the
// report; the PNGs go to docs/.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

func main() {
	results := flag.String("results", "internal/bench/results", "folder of the result tables")
	out := flag.String("out", "docs", "folder for the PNGs")
	flag.Parse()
	if err := run(*results, *out); err != nil {
		fmt.Fprintln(os.Stderr, "benchplot:", err)
		os.Exit(1)
	}
}

func run(results, out string) error {
	kafka, err := readTable(filepath.Join(results, "kafka.md"), "Mode", "Batch (max records)", "Records/s")
	if err != nil {
		return err
	}
	sqs, err := readTable(filepath.Join(results, "sqs.md"), "Messages per task", "Concurrency", "Connector msg/s")
	if err != nil {
		return err
	}
	kinesis, err := readTable(filepath.Join(results, "kinesis.md"), "Shards", "Mode", "Freshness p50", "Freshness p99")
	if err != nil {
		return err
	}
	if err := throughputPlot(kafka, sqs, filepath.Join(out, "bench-throughput.png")); err != nil {
		return err
	}
	return freshnessPlot(kinesis, filepath.Join(out, "bench-freshness.png"))
}

// readTable returns the rows of the first Markdown table in path whose
// header has every column named, as maps column → cell.
func readTable(path string, columns ...string) ([]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var header []string
	var rows []map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			if len(rows) > 0 {
				break
			}
			header = nil
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.Trim(strings.TrimSpace(cells[i]), "*")
		}
		switch {
		case header == nil:
			header = cells
			if !hasAll(header, columns) {
				header = []string{}
			}
		case len(header) == 0 || strings.HasPrefix(cells[0], "---"):
		default:
			row := map[string]string{}
			for i, h := range header {
				if i < len(cells) {
					row[h] = cells[i]
				}
			}
			rows = append(rows, row)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no table with columns %s", path, strings.Join(columns, ", "))
	}
	return rows, nil
}

func hasAll(header, columns []string) bool {
	for _, c := range columns {
		found := false
		for _, h := range header {
			found = found || h == c
		}
		if !found {
			return false
		}
	}
	return true
}

func number(s string) (float64, error) {
	return strconv.ParseFloat(strings.TrimSpace(s), 64)
}

// series is one line of a plot.
type series struct {
	name string
	pts  plotter.XYs
}

func (s *series) add(x, y string) error {
	xv, err := number(x)
	if err != nil {
		return err
	}
	yv, err := number(y)
	if err != nil {
		return err
	}
	s.pts = append(s.pts, plotter.XY{X: xv, Y: yv})
	return nil
}

func throughputPlot(kafka, sqs []map[string]string, path string) error {
	lines := []*series{{name: "Kafka inline (records/s vs records per batch)"}, {name: "Kafka staged (records/s vs records per batch)"},
		{name: "SQS, 1 poller (msg/s vs messages per task)"}, {name: "SQS, 8 pollers (msg/s vs messages per task)"}}
	for _, r := range kafka {
		i := 0
		if r["Mode"] == "staged" {
			i = 1
		}
		if err := lines[i].add(r["Batch (max records)"], r["Records/s"]); err != nil {
			return fmt.Errorf("kafka.md: %w", err)
		}
	}
	for _, r := range sqs {
		i := 2
		if r["Concurrency"] != "1" {
			i = 3
		}
		if err := lines[i].add(r["Messages per task"], r["Connector msg/s"]); err != nil {
			return fmt.Errorf("sqs.md: %w", err)
		}
	}
	p := plot.New()
	p.Title.Text = "Throughput against batch size (2-core machine, one Bacalhau node)"
	p.X.Label.Text = "records or messages per batch (log)"
	p.Y.Label.Text = "records or messages per second (log)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = true, true
	for i, l := range lines {
		if len(l.pts) == 0 {
			return errors.New("a throughput series is empty: " + l.name)
		}
		lp, pp, err := plotter.NewLinePoints(l.pts)
		if err != nil {
			return err
		}
		lp.Color, pp.Color = plotutil.Color(i), plotutil.Color(i)
		pp.Shape = plotutil.Shape(i)
		p.Add(lp, pp)
		p.Legend.Add(l.name, lp, pp)
	}
	p.Add(plotter.NewGrid())
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

func freshnessPlot(kinesis []map[string]string, path string) error {
	var p50, p99 plotter.Values
	var names []string
	for _, r := range kinesis {
		a, err := time.ParseDuration(r["Freshness p50"])
		if err != nil {
			return fmt.Errorf("kinesis.md: %w", err)
		}
		b, err := time.ParseDuration(r["Freshness p99"])
		if err != nil {
			return fmt.Errorf("kinesis.md: %w", err)
		}
		p50, p99 = append(p50, a.Seconds()), append(p99, b.Seconds())
		names = append(names, r["Shards"]+" shards, "+r["Mode"])
	}
	p := plot.New()
	p.Title.Text = "Kinesis freshness: record put → submission of the job holding it"
	p.Y.Label.Text = "seconds"
	w := vg.Points(28)
	b50, err := plotter.NewBarChart(p50, w)
	if err != nil {
		return err
	}
	b99, err := plotter.NewBarChart(p99, w)
	if err != nil {
		return err
	}
	b50.Color, b99.Color = color.RGBA{R: 66, G: 133, B: 244, A: 255}, color.RGBA{R: 219, G: 68, B: 55, A: 255}
	b50.Offset, b99.Offset = -w/2, w/2
	p.Add(b50, b99, plotter.NewGrid())
	p.Legend.Add("p50", b50)
	p.Legend.Add("p99", b99)
	p.Legend.Top, p.Legend.Left = true, true
	p.NominalX(names...)
	return p.Save(8*vg.Inch, 4*vg.Inch, path)
}

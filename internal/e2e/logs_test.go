package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
)

// summary mirrors the sample task's output contract.
type summary struct {
	Files     int            `json:"files"`
	Inputs    []string       `json:"inputs"`
	Requests  int            `json:"requests"`
	Bytes     int64          `json:"bytes"`
	ByStatus  map[string]int `json:"by_status"`
	TopPaths  []pathCount    `json:"top_paths"`
	Malformed int            `json:"malformed"`
}

type pathCount struct {
	Path  string `json:"path"`
	Count int    `json:"count"`
}

// logFiles generates n files of mixed nginx "combined" and JSON lines, with a
// few malformed ones, and the summary the task must report for them: the
// expectation is computed here from the generated records, not by the task's
// own code.
func logFiles(seed uint64, n, linesPerFile int) (map[string][]byte, summary) {
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	statuses := []int{200, 200, 200, 201, 301, 404, 500, 503}
	paths := []string{"/", "/index.html", "/api/v1/items", "/api/v1/users", "/login", "/static/app.js", "/health"}
	want := summary{Files: n, ByStatus: map[string]int{}}
	counts := map[string]int{}
	files := map[string][]byte{}
	for f := 0; f < n; f++ {
		var b strings.Builder
		for i := 0; i < linesPerFile; i++ {
			status := statuses[rnd.IntN(len(statuses))]
			path := paths[rnd.IntN(len(paths))]
			size := int64(rnd.IntN(5000))
			switch rnd.IntN(10) {
			case 0: // malformed
				fmt.Fprintf(&b, "garbage line %d without a request\n", i)
				want.Malformed++
				continue
			case 1, 2, 3, 4:
				fmt.Fprintf(&b, `{"status":%d,"bytes":%d,"path":%q,"ts":"2026-11-27T10:00:00Z"}`+"\n", status, size, path)
			default:
				fmt.Fprintf(&b, "10.0.%d.%d - - [27/Nov/2026:10:%02d:00 +0000] \"GET %s HTTP/1.1\" %d %d \"-\" \"curl/8.5\"\n",
					rnd.IntN(255), rnd.IntN(255), i%60, path, status, size)
			}
			want.Requests++
			want.Bytes += size
			want.ByStatus[strconv.Itoa(status)]++
			counts[path]++
		}
		name := fmt.Sprintf("access-%03d.log", f)
		files[name] = []byte(b.String())
		want.Inputs = append(want.Inputs, name)
	}
	for p, c := range counts {
		want.TopPaths = append(want.TopPaths, pathCount{p, c})
	}
	sort.Slice(want.TopPaths, func(i, j int) bool {
		if want.TopPaths[i].Count != want.TopPaths[j].Count {
			return want.TopPaths[i].Count > want.TopPaths[j].Count
		}
		return want.TopPaths[i].Path < want.TopPaths[j].Path
	})
	return files, want
}

func decodeSummary(raw []byte) (summary, error) {
	var s summary
	err := json.Unmarshal(raw, &s)
	return s, err
}

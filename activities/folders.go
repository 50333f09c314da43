package activities

import (
	"path"
	"strings"
)

// FolderEntries counts the entries each folder of a batch's /inputs tree
// holds, so a batch can be cut before one folder holds too many.
//
// Why: Bacalhau v1.7's WASM executor mounts every input on its own and
// answers a listing of a folder of mounts with all of its entries at once,
// whatever the guest asked for and without an end. A guest that reads a
// folder in more than one call (Go's os.ReadDir reads 8 KiB of entries,
// 340 of them, per call) then lists it forever and runs out of memory:
// measured with the sample task, 340 objects in one folder run and 341 do
// not. A batch whose folders each hold fewer entries than a guest reads in
// one call is listed correctly.
type FolderEntries struct {
	max     int
	entries map[string]map[string]struct{}
}

// NewFolderEntries counts against a bound of max entries per folder; zero
// or less is no bound.
func NewFolderEntries(max int) *FolderEntries {
	return &FolderEntries{max: max, entries: map[string]map[string]struct{}{}}
}

// Fits reports whether the object with this key can join the batch
// without a folder passing the bound.
func (f *FolderEntries) Fits(key string) bool {
	if f.max <= 0 {
		return true
	}
	fits := true
	f.walk(key, func(folder, entry string) {
		if _, ok := f.entries[folder][entry]; !ok && len(f.entries[folder]) >= f.max {
			fits = false
		}
	})
	return fits
}

// Add counts the object with this key in the batch.
func (f *FolderEntries) Add(key string) {
	if f.max <= 0 {
		return
	}
	f.walk(key, func(folder, entry string) {
		if f.entries[folder] == nil {
			f.entries[folder] = map[string]struct{}{}
		}
		f.entries[folder][entry] = struct{}{}
	})
}

// Reset empties the count for the next batch.
func (f *FolderEntries) Reset() { clear(f.entries) }

// walk calls fn with each folder of the key's target under /inputs and the
// entry the key puts in it, cleaned as the executor cleans mount paths.
func (f *FolderEntries) walk(key string, fn func(folder, entry string)) {
	parts := strings.Split(strings.TrimPrefix(path.Clean("/inputs/"+key), "/"), "/")
	for i := 1; i < len(parts); i++ {
		fn(strings.Join(parts[:i], "/"), parts[i])
	}
}

package activities

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func at(min int) time.Time { return time.Date(2026, 11, 27, 10, min, 0, 0, time.UTC) }

func TestCursorFindsLateObjectsThatSortBeforeIt(t *testing.T) {
	var c Cursor
	lookback := 30 * time.Minute
	first := []Object{{Key: "10/a", LastModified: at(0)}, {Key: "10/b", LastModified: at(1)}}
	for _, o := range first {
		assert.True(t, c.Candidate(o, time.Time{}, lookback))
	}
	c = c.Advance(first, lookback)
	assert.Equal(t, "10/b", c.Key)
	for _, o := range first {
		assert.False(t, c.Candidate(o, time.Time{}, lookback), "done: %s", o.Key)
	}
	late := Object{Key: "09/z", LastModified: at(5)} // sorts before the cursor, arrived after it
	assert.True(t, c.Candidate(late, time.Time{}, lookback))
	old := Object{Key: "09/y", LastModified: at(0).Add(-time.Hour)} // before the window: processed long ago or before start
	assert.False(t, c.Candidate(old, time.Time{}, lookback))
	newer := Object{Key: "10/c", LastModified: at(2)}
	assert.True(t, c.Candidate(newer, time.Time{}, lookback))

	c = c.Advance([]Object{late, newer}, lookback)
	assert.False(t, c.Candidate(late, time.Time{}, lookback), "a late object is processed once")
	assert.Equal(t, "10/c", c.Key)
	assert.Len(t, c.Done, 4)

	// The window moves on: entries older than Time - lookback are dropped,
	// and their keys, all at or before the cursor, stay excluded.
	c = c.Advance([]Object{{Key: "11/a", LastModified: at(50)}}, lookback)
	assert.Equal(t, []DoneKey{{Key: "11/a", LastModified: at(50)}}, c.Done)
	assert.False(t, c.Candidate(Object{Key: "10/a", LastModified: at(0)}, time.Time{}, lookback))
}

func TestCursorStartTime(t *testing.T) {
	var c Cursor
	assert.False(t, c.Candidate(Object{Key: "a", LastModified: at(0)}, at(1), time.Hour))
	assert.True(t, c.Candidate(Object{Key: "a", LastModified: at(1)}, at(1), time.Hour))
}

func TestCursorStartAfterKeySkipsKeysAtOrBeforeIt(t *testing.T) {
	c := Cursor{Key: "logs/b"}
	assert.False(t, c.Candidate(Object{Key: "logs/a", LastModified: at(5)}, time.Time{}, time.Hour), "before the start key")
	assert.False(t, c.Candidate(Object{Key: "logs/b", LastModified: at(5)}, time.Time{}, time.Hour), "the start key itself")
	assert.True(t, c.Candidate(Object{Key: "logs/c", LastModified: at(5)}, time.Time{}, time.Hour))
	// Once something was processed, the look-back window applies again.
	c = c.Advance([]Object{{Key: "logs/c", LastModified: at(5)}}, time.Hour)
	assert.True(t, c.Candidate(Object{Key: "logs/a", LastModified: at(5)}, time.Time{}, time.Hour), "a late arrival inside the window")
}

func TestCursorNotBeforeSkipsOlderObjectsAndSurvivesAdvance(t *testing.T) {
	c := Cursor{NotBefore: at(10)}
	assert.False(t, c.Candidate(Object{Key: "a", LastModified: at(9)}, time.Time{}, time.Hour))
	assert.True(t, c.Candidate(Object{Key: "a", LastModified: at(10)}, time.Time{}, time.Hour))
	c = c.Advance([]Object{{Key: "a", LastModified: at(10)}}, time.Hour)
	assert.Equal(t, at(10), c.NotBefore)
	assert.False(t, c.Candidate(Object{Key: "b", LastModified: at(9)}, time.Time{}, time.Hour))
}

func TestScanWantsBackfillRangeOnly(t *testing.T) {
	in := ScanInput{Backfill: &BackfillRange{From: at(10), To: at(20), AfterKey: "b"}}
	assert.False(t, in.wanted(Object{Key: "c", LastModified: at(9)}))
	assert.True(t, in.wanted(Object{Key: "c", LastModified: at(10)}))
	assert.False(t, in.wanted(Object{Key: "c", LastModified: at(20)}))
	assert.False(t, in.wanted(Object{Key: "a", LastModified: at(15)}), "at or before AfterKey")
}

func TestMarkDoneKeepsTheKeyBehindAFailedBatch(t *testing.T) {
	lookback := time.Minute
	c := Cursor{}.Advance([]Object{{Key: "a", LastModified: at(0)}}, lookback)
	// Batch "b" failed; batch "c" after it succeeded.
	c = c.MarkDone([]Object{{Key: "c", LastModified: at(0)}}, lookback)
	assert.Equal(t, "a", c.Key)
	assert.True(t, c.Candidate(Object{Key: "b", LastModified: at(0)}, time.Time{}, lookback), "the failed batch runs again")
	assert.False(t, c.Candidate(Object{Key: "c", LastModified: at(0)}, time.Time{}, lookback), "the succeeded one does not")
	// Much later, c is still remembered while the key has not passed it.
	c = c.MarkDone([]Object{{Key: "d", LastModified: at(50)}}, lookback)
	assert.False(t, c.Candidate(Object{Key: "c", LastModified: at(0)}, time.Time{}, lookback))
	c = c.Advance([]Object{{Key: "b", LastModified: at(0)}}, lookback)
	assert.Equal(t, "b", c.Key)
}

func TestCursorCapsDoneWithAFloorAndKeepsExactlyOnce(t *testing.T) {
	lookback := time.Hour
	// 3,000 objects in batches of 100, one second apart in blocks of 10:
	// more than MaxDoneKeys inside the look-back window.
	var c Cursor
	var all []Object
	for i := 0; i < 3000; i += 100 {
		var batch []Object
		for j := i; j < i+100; j++ {
			batch = append(batch, Object{Key: fmt.Sprintf("in/%05d", j), LastModified: at(0).Add(time.Duration(j/10) * time.Second)})
		}
		all = append(all, batch...)
		c = c.Advance(batch, lookback)
	}
	assert.LessOrEqual(t, len(c.Done), MaxDoneKeys)
	assert.Equal(t, at(0).Add(99*time.Second+time.Nanosecond), c.Floor, "just after the newest dropped entry: objects 0..999 left Done")
	for _, o := range all {
		assert.False(t, c.Candidate(o, time.Time{}, lookback), "processed %s is no candidate", o.Key)
	}
	assert.True(t, c.Candidate(Object{Key: "in/99999", LastModified: at(0)}, time.Time{}, lookback), "after the key: a candidate whatever its age")
	assert.True(t, c.Candidate(Object{Key: "in/00000x", LastModified: c.Floor}, time.Time{}, lookback), "late, at the floor: a candidate")
	assert.False(t, c.Candidate(Object{Key: "in/00000x", LastModified: c.Floor.Add(-time.Second)}, time.Time{}, lookback),
		"late, before the floor: the narrowed window (documented)")

	// Entries after the key (an earlier batch failed) are never dropped.
	failedFirst := Cursor{Key: "a"}
	var marks []Object
	for j := 0; j < MaxDoneKeys+10; j++ {
		marks = append(marks, Object{Key: fmt.Sprintf("b/%05d", j), LastModified: at(0)})
	}
	failedFirst = failedFirst.MarkDone(marks, lookback)
	assert.Len(t, failedFirst.Done, MaxDoneKeys+10)
	assert.True(t, failedFirst.Floor.IsZero())
}

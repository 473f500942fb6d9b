package ledger

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppend measures durable appends (each returns after its group's
// fsync) with 1, 8 and 64 concurrent writers.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l := openTest(b, Options{})
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range writers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						ev := &Event{Type: "test.append", TraceID: NewTraceID(), Tenant: "bench", Cell: "wc",
							Caller: "uid:1000", Identity: ident("x"), Verdict: "ok",
							Usage: &Usage{WallNS: 1e6, CPUNS: 5e5, PeakMemoryBytes: 1 << 20}}
						if _, err := l.Append(ctx, ev); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "appends/s")
		})
	}
}

// BenchmarkRegister measures the latency of one registration (a new head
// of an existing name: record, lineage, head and event in one synced batch).
func BenchmarkRegister(b *testing.B) {
	l := openTest(b, Options{})
	ctx := context.Background()
	var head = ident("bench-0")
	if _, err := l.Register(ctx, record("bench", head), "", Event{}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		id := ident(fmt.Sprint("bench-", i+1))
		if _, err := l.Register(ctx, record("bench", id), head, Event{Caller: "uid:0"}); err != nil {
			b.Fatal(err)
		}
		head = id
	}
}

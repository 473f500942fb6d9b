package test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/ledger"
)

// callsPerOp is how many audited calls one benchmark iteration records, so
// that `make bench` (-benchtime 200x) measures thousands of events.
const callsPerOp = 10

// BenchmarkAuditEvents measures durable audited events per second: each
// writer records calls as the daemon does (a call.begin, then a call.end
// closing it, with a monitor fingerprint of realistic size), and every
// append returns only after its group's fsync. Writers share syncs through
// group commit.
func BenchmarkAuditEvents(b *testing.B) {
	monitor := `{"available":true,"baseline":true,"fingerprint":{"syscalls":203,"distinct_syscalls":18,"top":[` +
		strings.Repeat(`{"name":"rt_sigaction","nr":13,"count":114},`, 9) + `{"name":"read","nr":0,"count":2}],` +
		`"distinct_pairs":42,"novel_pair_count":0,"entropy_bits_per_byte":4.39,"bytes_written":88,"threads":3,"execs":1,"exits":1}}`
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			skey, vkey, err := note.GenerateKey(rand.Reader, "bench.tcc/ledger")
			if err != nil {
				b.Fatal(err)
			}
			signer, _ := note.NewSigner(skey)
			verifier, _ := note.NewVerifier(vkey)
			l, err := ledger.Open(context.Background(), ledger.Options{Dir: b.TempDir(), Signer: signer, Verifier: verifier})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			ctx := context.Background()
			total := int64(b.N * callsPerOp)
			var next, events atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := range writers {
				wg.Go(func() {
					for next.Add(1) <= total {
						begin := &ledger.Event{Type: ledger.TypeCallBegin, TraceID: ledger.NewTraceID(), Tenant: "bench",
							Caller: fmt.Sprint("uid:", 1000+w), Cell: "sha256", Identity: manifest.Identity("sha256:" + strings.Repeat("ab", 32)),
							InputSHA256: strings.Repeat("cd", 32)}
						if _, err := l.Append(ctx, begin); err != nil {
							b.Error(err)
							return
						}
						end := *begin
						end.Seq, end.TimeNS, end.Type, end.Ref = 0, 0, ledger.TypeCallEnd, &begin.Seq
						end.OutputSHA256, end.Verdict, end.Monitor = strings.Repeat("ef", 32), "ok", []byte(monitor)
						end.Usage = &ledger.Usage{WallNS: 2e6, CPUNS: 1e7, PeakMemoryBytes: 4 << 20}
						end.Wipe = &ledger.Wipe{Clean: true, ElapsedNS: 1e6}
						if _, err := l.Append(ctx, &end); err != nil {
							b.Error(err)
							return
						}
						events.Add(2)
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(events.Load())/elapsed.Seconds(), "events/s")
		})
	}
}

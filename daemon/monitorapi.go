package daemon

import (
	"context"
	"net/http"

	"github.com/trustcells/tcc/cells/capsule"
	"github.com/trustcells/tcc/cells/manifest"
	"github.com/trustcells/tcc/kernel"
	"github.com/trustcells/tcc/kernel/monitor"
	"github.com/trustcells/tcc/kernel/outcome"
)

// monitorRoutes mounts the control API of behaviour profiles, probation and advice.
func (d *Daemon) monitorRoutes(mux *http.ServeMux) {}

// initMonitor starts behaviour profiles, probation and advice; the returned func stops it.
func (d *Daemon) initMonitor(ctx context.Context) (func(), error) { return func() {}, nil }

// learn refines a cell's baseline from a call's final counters.
func (d *Daemon) learn(ctx context.Context, cell *kernel.Cell, o *outcome.Outcome, c *monitor.Counters, dev monitor.Deviation) {
}

// probation runs a capsule's examples before it is registered and returns
// the baseline learnt from them (nil without the monitor).
func (d *Daemon) probation(ctx context.Context, cell *kernel.Cell, caps *capsule.Capsule) (*monitor.Baseline, error) {
	return nil, nil
}

// baseline is the stored baseline of an identity; nil if none.
func (d *Daemon) baseline(id manifest.Identity) (*monitor.Baseline, error) {
	return nil, nil
}

// storeBaseline records the baseline learnt at registration.
func (d *Daemon) storeBaseline(ctx context.Context, id manifest.Identity, b *monitor.Baseline) error {
	return nil
}

// SPDX-License-Identifier: Apache-2.0

// Command discard is a sink plugin for the host's tests and benchmarks: it
// accepts every batch and drops it. Config {"reject": "message"} makes it
// reject every batch with that message instead; {"cpuprofile": "path"}
// writes a CPU profile of the plugin process, from Configure to Close, to
// path (BenchmarkWriteAcrossPlugin uses it to profile the plugin side);
// {"echo": n} prints a line of n bytes to stdout per event, as a sink
// printing events would, but without the formatting, so that benchmarks
// can tell the cost of go-plugin's stdout forwarding from the rest.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"runtime/pprof"
	"time"

	"github.com/flowtap/flowtap/plugins/sdk"
)

type discard struct {
	reject  string
	profile *os.File
	line    []byte // echoed per event
	out     *bufio.Writer
}

func (d *discard) Info() sdk.Info { return sdk.Info{Name: "discard", Version: "test"} }

func (d *discard) Configure(_ context.Context, config []byte) error {
	var c struct {
		Reject, CPUProfile string
		Echo               int
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return sdk.ConfigError{Message: err.Error()}
	}
	d.reject = c.Reject
	if c.Echo > 0 {
		d.line = append(bytes.Repeat([]byte("x"), c.Echo-1), '\n')
		// Like the stdout sink: os.Stdout is looked up at each write.
		d.out = bufio.NewWriterSize(stdout{}, 64<<10)
	}
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return sdk.ConfigError{Key: "cpuprofile", Message: err.Error()}
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return sdk.ConfigError{Key: "cpuprofile", Message: err.Error()}
		}
		d.profile = f
	}
	// A duration and a large count, which the host's log must print as
	// such (TestPluginLogNumbers).
	sdk.Logger().Info("configured discard sink", "reject", d.reject, "flush_every", 5*time.Second, "limit", uint64(5_000_000_000))
	return nil
}

func (d *discard) Write(_ context.Context, batch []sdk.Event) error {
	if d.reject != "" {
		return errors.New(d.reject)
	}
	if d.out != nil {
		for range batch {
			_, _ = d.out.Write(d.line)
		}
		return d.out.Flush()
	}
	return nil
}

type stdout struct{}

func (stdout) Write(p []byte) (int, error) { return os.Stdout.Write(p) }

func (d *discard) Close(context.Context) error {
	if d.profile != nil {
		pprof.StopCPUProfile()
		return d.profile.Close()
	}
	return nil
}

func main() { sdk.Serve(&discard{}) }

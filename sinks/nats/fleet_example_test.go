// SPDX-License-Identifier: Apache-2.0

package nats_test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/plugins/sdk/sdktest"
	"github.com/flowtap/flowtap/sinks/internal/sinkconf"
	"github.com/flowtap/flowtap/sinks/nats"
)

// TestFleetExample checks the fleet example's configs: the agents'
// pipeline file loads as flowtap loads it, and its sink config is one the
// sink takes; each node's nats-server config passes the server's own
// check (-t). (make test runs the consumer's own tests, in its module.)
func TestFleetExample(t *testing.T) {
	cfg, err := configs.Load(filepath.Join(nats.FleetDir, "flowtap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(cat); err != nil {
		t.Fatal(err)
	}
	sk := cfg.Pipelines[0].Sinks[0]
	raw, err := json.Marshal(sk.Config)
	if err != nil {
		t.Fatal(err)
	}
	var c nats.Config
	if err := sinkconf.Decode(raw, &c); err != nil {
		t.Fatal(err)
	}
	if sk.Plugin != "nats" || c.Subject != "flowtap."+nats.HostToken+"."+nats.EventToken || c.Replicas != 3 || len(c.Servers) != 3 {
		t.Errorf("the fleet's sink: %s %+v", sk.Plugin, c)
	}
	// Every key valid, without connecting.
	sdktest.SetValidateOnly(t)
	h := sdktest.New(t, nats.New())
	if err := h.Configure(sk.Config); err != nil {
		t.Errorf("the fleet's sink config: %v", err)
	}
	_ = h.Close()

	confs, err := filepath.Glob(filepath.Join(nats.FleetDir, "nats", "*.conf"))
	if err != nil || len(confs) != 3 {
		t.Fatalf("nats-server configs of the fleet example: %v %v", confs, err)
	}
	bin := nats.BuildNATSServer(t)
	for _, conf := range confs {
		if out, err := exec.Command(bin, "-t", "-c", conf).CombinedOutput(); err != nil {
			t.Errorf("nats-server -t -c %s: %v\n%s", conf, err, out)
		}
	}
}

package nats

import (
	"encoding/json"
	"testing"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/sinks/internal/sinkconf"
)

// TestSampleConfig loads sample.yaml as flowtap would and decodes its
// sink config strictly: every key in it is one the sink knows. (The files
// it names do not exist here, so it is not configured.)
func TestSampleConfig(t *testing.T) {
	cfg, err := configs.Load("sample.yaml")
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
	if sk.Plugin != "nats" {
		t.Fatalf("sample's sink is %q", sk.Plugin)
	}
	raw, err := json.Marshal(sk.Config)
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	if err := sinkconf.Decode(raw, &c, validKeys); err != nil {
		t.Fatal(err)
	}
	if len(c.Servers) != 2 || c.Subject != "flowtap.{event}" || c.TLS.CAFile == "" {
		t.Errorf("sample decoded to %+v", c)
	}
}

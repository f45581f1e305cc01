package nats

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/sinks/internal/sinkconf"
)

// TestSampleConfig loads sample.yaml as flowtap would and decodes its
// sink config strictly: every key in it is one the sink knows. (The files
// it names do not exist here, so it is not configured.)
func TestSampleConfig(t *testing.T) {
	raw := natsSinkConfig(t, "sample.yaml")
	var c Config
	if err := sinkconf.Decode(raw, &c, validKeys); err != nil {
		t.Fatal(err)
	}
	if len(c.Servers) != 2 || c.Subject != "flowtap.{host}.{event}" || c.TLS.CAFile == "" {
		t.Errorf("sample decoded to %+v", c)
	}
}

// TestFleetExample checks the fleet example's configs: the agents'
// pipeline file loads, and its sink config is valid to the sink; each
// node's nats-server config passes the server's own check (-t). And it
// runs the consumer's own tests, in its module.
func TestFleetExample(t *testing.T) {
	goInFleet(t, "test", "-count=1", "./...")
	st, err := parseConfig(natsSinkConfig(t, filepath.Join(fleetDir, "flowtap.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	if st.subject != "flowtap."+HostToken+"."+EventToken || st.replicas != 3 || len(st.servers) != 3 {
		t.Errorf("the fleet's sink: subject %q, %d replicas, servers %v", st.subject, st.replicas, st.servers)
	}
	confs, err := filepath.Glob(filepath.Join(fleetDir, "nats", "*.conf"))
	if err != nil || len(confs) != 3 {
		t.Fatalf("nats-server configs of the fleet example: %v %v", confs, err)
	}
	bin := buildNATSServer(t)
	for _, conf := range confs {
		if out, err := exec.Command(bin, "-t", "-c", conf).CombinedOutput(); err != nil {
			t.Errorf("nats-server -t -c %s: %v\n%s", conf, err, out)
		}
	}
}

// natsSinkConfig loads the pipeline file at path as flowtap would and
// returns the config of its first pipeline's first sink, a nats sink, as
// the plugin gets it.
func natsSinkConfig(t *testing.T, path string) []byte {
	t.Helper()
	cfg, err := configs.Load(path)
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
		t.Fatalf("%s: the first sink is %q", path, sk.Plugin)
	}
	raw, err := json.Marshal(sk.Config)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

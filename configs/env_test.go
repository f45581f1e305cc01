// SPDX-License-Identifier: Apache-2.0

package configs

import (
	"strings"
	"testing"
	"time"
)

func TestApplyEnvOverridesFile(t *testing.T) {
	c, err := Load(write(t, "c.yaml", "capture: {ring_buffer_size: 65536, syn_timeout: 5s}\nlog: {level: info}\npipelines: [{name: p, events: [flows], sinks: [{plugin: stdout}]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	ps := c.ApplyEnv([]string{
		"FLOWTAP_CAPTURE_RING_BUFFER_SIZE=131072",
		"FLOWTAP_CAPTURE_SYN_TIMEOUT=2s",
		"FLOWTAP_CAPTURE_DNS_ENABLED=false",
		"FLOWTAP_LOG_LEVEL=debug",
		"FLOWTAP_PLUGIN_LOG_LEVEL=trace", // the plugin SDK's own: not a config key
		"HOME=/root",
	})
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	if c.Capture.RingBufferSize != 131072 || c.Capture.SYNTimeout != 2*time.Second || c.Log.Level != "debug" ||
		c.Capture.DNS.Enabled == nil || *c.Capture.DNS.Enabled {
		t.Errorf("env not applied: %+v %+v", c.Capture, c.Log)
	}
}

func TestApplyEnvProblems(t *testing.T) {
	c := &Config{}
	ps := c.ApplyEnv([]string{"FLOWTAP_CAPTURE_RING_BUFER_SIZE=1", "FLOWTAP_CAPTURE_FLOW_TABLE_SIZE=many", "FLOWTAP_CAPTURE_SYN_TIMEOUT=5"})
	got := ps.Error()
	for _, want := range []string{
		"environment: FLOWTAP_CAPTURE_RING_BUFER_SIZE: names no config key: did you mean FLOWTAP_CAPTURE_RING_BUFFER_SIZE?",
		`environment: FLOWTAP_CAPTURE_FLOW_TABLE_SIZE: "many" is not a whole number`,
		`environment: FLOWTAP_CAPTURE_SYN_TIMEOUT: "5" is not a duration`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
}

func TestEnvKeys(t *testing.T) {
	keys := EnvKeys()
	for env, key := range map[string]string{
		"FLOWTAP_CAPTURE_RING_BUFFER_SIZE": "capture.ring_buffer_size",
		"FLOWTAP_CAPTURE_DNS_CACHE_SIZE":   "capture.dns.cache_size",
		"FLOWTAP_LOG_FORMAT":               "log.format",
	} {
		if keys[env] != key {
			t.Errorf("EnvKeys()[%s] = %q, want %q", env, keys[env], key)
		}
	}
	if len(keys) != 18 {
		t.Errorf("EnvKeys has %d keys, want 18: %v", len(keys), keys)
	}
}

func TestEnvSeedAndLabels(t *testing.T) {
	var c Config
	if ps := c.ApplyEnv([]string{"FLOWTAP_CAPTURE_COMMUNITY_ID_SEED=7", "FLOWTAP_CAPTURE_WORKLOAD_POD_LABELS=app, tier"}); len(ps) > 0 {
		t.Fatal(ps)
	}
	if c.Capture.CommunityIDSeed != 7 || strings.Join(c.Capture.Workload.PodLabels, "|") != "app|tier" {
		t.Errorf("seed %d, labels %q", c.Capture.CommunityIDSeed, c.Capture.Workload.PodLabels)
	}
	if ps := c.ApplyEnv([]string{"FLOWTAP_CAPTURE_COMMUNITY_ID_SEED=70000"}); len(ps) != 1 || !strings.Contains(ps[0].Error(), "0 to 65535") {
		t.Errorf("seed 70000: %v", ps)
	}
}

func TestAddFilter(t *testing.T) {
	c := &Config{Pipelines: []Pipeline{{Name: "a"}, {Name: "b", Filter: "dst_port=22"}}}
	c.AddFilter("pid=1")
	if c.Pipelines[0].Filter != "pid=1" || c.Pipelines[1].Filter != "(dst_port=22) and (pid=1)" {
		t.Errorf("filters = %q, %q", c.Pipelines[0].Filter, c.Pipelines[1].Filter)
	}
}

func TestEnvProblemsNameTheVariable(t *testing.T) {
	t.Setenv("FLOWTAP_CAPTURE_RING_BUFFER_SIZE", "12")
	_, err := Default()
	if err == nil || !strings.Contains(err.Error(), "environment: FLOWTAP_CAPTURE_RING_BUFFER_SIZE: invalid ring buffer size 12") {
		t.Errorf("error = %v, want it to name the variable", err)
	}
}

func TestChangedCaptureKeys(t *testing.T) {
	on := true
	a := &Config{Capture: Capture{RingBufferSize: 4096, SYNTimeout: time.Second}}
	b := &Config{Capture: Capture{RingBufferSize: 8192, SYNTimeout: time.Second, DNS: DNS{Enabled: &on}}}
	if got := strings.Join(a.ChangedCaptureKeys(b), " "); got != "capture.dns.enabled capture.ring_buffer_size" {
		t.Errorf("changed keys = %q", got)
	}
	if got := a.ChangedCaptureKeys(a); len(got) != 0 {
		t.Errorf("a config differs from itself in %v", got)
	}
}

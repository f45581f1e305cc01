// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowtap/flowtap/configs"
	"github.com/flowtap/flowtap/events"
	"github.com/flowtap/flowtap/internal/testutil"
	"github.com/flowtap/flowtap/pipeline"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// run executes flowtap in-process with args and returns what it printed
// and its error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot(nil)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	testutil.Golden(t, filepath.Join("testdata", name), got, *update)
}

func TestExplainGolden(t *testing.T) {
	out, err := run(t, "explain", "--config", "../../configs/examples/failed.toml", "--filter", "pid>0")
	if err != nil {
		t.Fatal(err)
	}
	// The program list changes with kernel work: check it against what
	// the pipeline plans for this config, and keep it out of the golden
	// file.
	cat, err := events.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load("../../configs/examples/failed.toml")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pipeline.Resolve(cat, cfg)
	if err != nil {
		t.Fatal(err)
	}
	progs, err := pipeline.PlannedPrograms(plan.Shared, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.SplitAfter(out, "\n") {
		isProg := false
		for _, p := range progs {
			isProg = isProg || strings.HasPrefix(line, "  "+p.Name+" ") && strings.Contains(line, p.Section)
		}
		if !isProg {
			kept = append(kept, line)
		}
	}
	if len(kept) != strings.Count(out, "\n")+1-len(progs) {
		t.Errorf("explain does not list each of the %d BPF programs once:\n%s", len(progs), out)
	}
	golden(t, "explain_failed.golden", strings.Join(kept, ""))
}

// TestPrecedence checks flags > FLOWTAP_* environment > config file >
// defaults, through what explain prints.
func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	body := "capture: {syn_timeout: 5s, flow_table_size: 100, flow_idle_timeout: 1m}\npipelines: [{name: p, events: [flows], sinks: [{plugin: stdout}]}]\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLOWTAP_CAPTURE_SYN_TIMEOUT", "3s")
	t.Setenv("FLOWTAP_CAPTURE_FLOW_TABLE_SIZE", "50")
	out, err := run(t, "explain", "--config", cfg, "--flow-table-size", "10")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"flow_table_size:    10\n",   // flag over environment and file
		"syn_timeout:        3s\n",   // environment over file
		"flow_idle_timeout:  1m0s\n", // file over default
		"ring_buffer_size:   33554432 (default)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	out, err := run(t, "config", "validate", "--no-plugins", "../../configs/examples/security.yaml")
	if err != nil || !strings.Contains(out, "security.yaml: valid (1 pipeline)") {
		t.Errorf("valid example: %q, %v", out, err)
	}
	_, err = run(t, "config", "validate", "../../configs/testdata/validate/unknown_keys.yaml")
	if err == nil || !strings.Contains(err.Error(), "invalid config: 8 problems") {
		t.Errorf("invalid config: error %v", err)
	}
	_, err = run(t, "config", "validate", "--no-plugins", "--filter", "dst_prt=1", "../../configs/examples/security.yaml")
	if err == nil || !strings.Contains(err.Error(), `did you mean "dst_port"`) {
		t.Errorf("--filter is not validated: %v", err)
	}
}

func TestMan(t *testing.T) {
	out, err := run(t, "man", "net_flow_tcp_failed")
	if err != nil || !strings.HasPrefix(out, "---\ntitle: FLOWTAP-NET-FLOW-TCP-FAILED\n") || !strings.Contains(out, "**reason** (*string*)") {
		t.Errorf("man page: %v\n%s", err, out)
	}
	if _, err := run(t, "man", "net_flow_tcp_fail"); err == nil || !strings.Contains(err.Error(), `did you mean "net_flow_tcp_failed"`) {
		t.Errorf("unknown event: %v", err)
	}
	dir := t.TempDir()
	if _, err := run(t, "man", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "net_flow_tcp_end.md")); err != nil {
		t.Error(err)
	}
}

func TestDNSPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	body := "capture: {dns: {enabled: true, cache_size: 10}}\npipelines: [{name: p, events: [flows], sinks: [{plugin: stdout}]}]\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLOWTAP_CAPTURE_DNS_CACHE_SIZE", "20")
	out, err := run(t, "explain", "--config", cfg, "--dns=false")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"dns.enabled:        false: bpf/dns_programs is not loaded", // flag over file
		"dns.cache_size:     20\n",                                  // environment over file
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, "explain", "--config", cfg, "--dns-cache-size", "30")
	if err != nil || !strings.Contains(out, "dns.enabled:        true\n") || !strings.Contains(out, "dns.cache_size:     30\n") {
		t.Errorf("explain --dns-cache-size 30: %v\n%s", err, out)
	}
}

// TestReplayRefusesBadArguments checks the replay command's own errors,
// before anything starts: a bad --local, a file that cannot be opened.
func TestReplayRefusesBadArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replay", "x.pcap", "--local", "10.0.0.0/40"}, `--local: local address "10.0.0.0/40"`},
		{[]string{"replay", filepath.Join(t.TempDir(), "missing.pcap")}, "replay: open "},
		{[]string{"replay"}, "accepts 1 arg(s)"},
	} {
		_, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("flowtap %v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

// TestListSinks: `flowtap list --sinks` lists every built-in sink with
// its config keys, secret ones marked; --json gives the same as JSON.
func TestListSinks(t *testing.T) {
	out, err := run(t, "list", "--sinks")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stdout: ", "\n  format    string\n", "file: ", "  max_size_mb  number\n",
		"webhook: ", "  retry.max_attempts ", "  headers ", "nats: ", "  servers ", "  token ", "secret: never shown"} {
		if !strings.Contains(out, want) {
			t.Errorf("list --sinks lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, "list", "--sinks", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []struct {
		Name string
		Keys []struct {
			Name   string
			Secret bool
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list --sinks --json: %v\n%s", err, out)
	}
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "stdout,file,webhook,nats" || len(list[3].Keys) == 0 {
		t.Errorf("sinks %v", list)
	}
}

// TestValidateRunsNoPlugin: 'config validate' starts no plugin unless
// --check-plugins asks; a relative plugin path is relative to the config
// file, so ./evil in the working directory never runs, even then.
func TestValidateRunsNoPlugin(t *testing.T) {
	work, confDir := t.TempDir(), t.TempDir()
	marker := filepath.Join(t.TempDir(), "ran")
	if err := os.Chmod(filepath.Dir(marker), 0o777); err != nil { // plugins may run as nobody
		t.Fatal(err)
	}
	evil := "#!/bin/sh\necho evil > " + marker + "\n"
	if err := os.WriteFile(filepath.Join(work, "evil"), []byte(evil), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(confDir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("pipelines: [{name: p, events: [flows], sinks: [{plugin: ./evil}]}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)
	if out, err := run(t, "config", "validate", cfg); err != nil || !strings.Contains(out, "valid (1 pipeline)") {
		t.Errorf("validate without --check-plugins: %q, %v", out, err)
	}
	_, err := run(t, "config", "validate", "--check-plugins", cfg)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(confDir, "evil")) {
		t.Errorf("validate --check-plugins = %v, want a problem naming %s", err, filepath.Join(confDir, "evil"))
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("./evil in the working directory ran")
	}
	// The same file next to the config is what runs: it is no plugin.
	if err := os.WriteFile(filepath.Join(confDir, "evil"), []byte(evil), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "config", "validate", cfg); err != nil {
		t.Errorf("validate without --check-plugins: %v", err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("validate without --check-plugins ran the plugin")
	}
}

// TestExplainHidesSecrets: explain shows a sink's config without the
// values of its secret keys (webhook headers, NATS password, token,
// credentials) nor a URL's password; a third-party plugin's keys named
// like credentials are hidden too.
func TestExplainHidesSecrets(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "s.yaml")
	body := `pipelines:
  - name: p
    events: [flows]
    sinks:
      - plugin: webhook
        config: {url: "https://user:hunter2@example.com/in", headers: {Authorization: "Bearer s3cr3t-token"}}
      - plugin: nats
        config: {servers: ["nats://127.0.0.1:4222"], subject: x, user: u, password: pa55w0rd, token: t0ken-value, creds_file: /etc/creds-secret}
      - plugin: /opt/third-party
        config: {api_key: k3y-value, endpoint: "http://a:b4sic@h/"}
`
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "explain", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2", "s3cr3t-token", "pa55w0rd", "t0ken-value", "creds-secret", "k3y-value", "b4sic"} {
		if strings.Contains(out, secret) {
			t.Errorf("explain shows the secret %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "<redacted>") || !strings.Contains(out, "example.com") {
		t.Errorf("explain output lacks the redacted config:\n%s", out)
	}
}

// SPDX-License-Identifier: Apache-2.0

// Package deploycheck tests the Kubernetes manifests in deploy/: helm lint
// and helm template on the chart (Helm pinned in tools/go.mod), every
// rendered object decoded strictly into its k8s.io/api type, the chart's
// default render against the plain deploy/kubernetes/daemonset.yaml, and
// the pipelines both carry validated by the real flowtap.
package deploycheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "../../deploy/helm/flowtap"
	plainFile = "../../deploy/kubernetes/daemonset.yaml"
	// The release the plain manifest corresponds to.
	release   = "flowtap"
	namespace = "flowtap"
	// The port of --metrics-addr (issue 17's /metrics, /healthz, /readyz).
	metricsPort = 9464
)

// helm runs the Helm CLI pinned in tools/go.mod.
func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "helm"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// objects are the typed objects of one manifest.
type objects struct {
	ServiceAccount *corev1.ServiceAccount
	ConfigMap      *corev1.ConfigMap
	DaemonSet      *appsv1.DaemonSet
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decode splits a multi-document manifest and decodes each object
// strictly (an unknown or misspelt field, a duplicate key or a wrong type
// is an error) into its k8s.io/api type. Kinds other than the three the
// manifests hold are an error too.
func decode(manifest []byte) (objects, error) {
	var o objects
	for i, doc := range docSep.Split(string(manifest), -1) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return o, fmt.Errorf("document %d: %w", i, err)
		}
		if tm.Kind == "" && strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var target any
		switch gvk := tm.APIVersion + " " + tm.Kind; gvk {
		case "v1 ServiceAccount":
			o.ServiceAccount = &corev1.ServiceAccount{}
			target = o.ServiceAccount
		case "v1 ConfigMap":
			o.ConfigMap = &corev1.ConfigMap{}
			target = o.ConfigMap
		case "apps/v1 DaemonSet":
			o.DaemonSet = &appsv1.DaemonSet{}
			target = o.DaemonSet
		default:
			return o, fmt.Errorf("document %d: unexpected object %q", i, gvk)
		}
		if err := strictUnmarshal([]byte(doc), target); err != nil {
			return o, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
	}
	if o.ServiceAccount == nil || o.ConfigMap == nil || o.DaemonSet == nil {
		return o, fmt.Errorf("want a ServiceAccount, a ConfigMap and a DaemonSet, got %+v", o)
	}
	return o, nil
}

// strictUnmarshal decodes YAML into v the way the API server's strict
// field validation does: keys must match the json tags case-sensitively
// (encoding/json alone would take "hostPid" for hostPID), and unknown or
// duplicate fields are errors.
func strictUnmarshal(doc []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(js, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func plain(t *testing.T) objects {
	t.Helper()
	raw, err := os.ReadFile(plainFile)
	if err != nil {
		t.Fatal(err)
	}
	o, err := decode(raw)
	if err != nil {
		t.Fatalf("%s: %v", plainFile, err)
	}
	return o
}

func render(t *testing.T, args ...string) objects {
	t.Helper()
	out := helm(t, append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	o, err := decode(out)
	if err != nil {
		t.Fatalf("helm template %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return o
}

func TestHelmLint(t *testing.T) {
	helm(t, "lint", "--strict", chartDir)
	helm(t, "lint", "--strict", chartDir, "-f", "testdata/values-custom.yaml")
}

// TestDecodeRefusesUnknownFields shows the strict decoding can fail: a
// misspelt field in a DaemonSet is an error, not silently dropped.
func TestDecodeRefusesUnknownFields(t *testing.T) {
	raw, err := os.ReadFile(plainFile)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(raw, []byte("hostPID: true"), []byte("hostPid: true"), 1)
	if bytes.Equal(bad, raw) {
		t.Fatal("the manifest has no 'hostPID: true' to misspell")
	}
	if _, err := decode(bad); err == nil || !strings.Contains(err.Error(), "hostPid") {
		t.Errorf("decode of a misspelt field = %v, want an error naming hostPid", err)
	}
}

// helmOnly are the labels and annotations only Helm adds; the rest must
// agree.
var (
	helmOnlyLabels      = []string{"helm.sh/chart", "app.kubernetes.io/managed-by"}
	helmOnlyAnnotations = []string{"checksum/config"}
)

func dropKeys(m map[string]string, keys []string) {
	for _, k := range keys {
		delete(m, k)
	}
}

// normalize removes what only Helm adds and turns the pipelines file into
// its parsed form, so that layout and comments do not count.
func normalize(t *testing.T, o objects) objects {
	t.Helper()
	for _, meta := range []*metav1.ObjectMeta{&o.ServiceAccount.ObjectMeta, &o.ConfigMap.ObjectMeta, &o.DaemonSet.ObjectMeta, &o.DaemonSet.Spec.Template.ObjectMeta} {
		dropKeys(meta.Labels, helmOnlyLabels)
		dropKeys(meta.Annotations, helmOnlyAnnotations)
	}
	var cfg any
	if err := strictUnmarshal([]byte(o.ConfigMap.Data["pipelines.yaml"]), &cfg); err != nil {
		t.Fatalf("ConfigMap pipelines.yaml: %v", err)
	}
	canon, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o.ConfigMap.Data["pipelines.yaml"] = string(canon)
	return o
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestChartMatchesPlainManifest: the chart with its default values and the
// plain manifest describe the same objects.
func TestChartMatchesPlainManifest(t *testing.T) {
	want := normalize(t, plain(t))
	got := normalize(t, render(t))
	if _, ok := render(t).DaemonSet.Spec.Template.Annotations["checksum/config"]; !ok {
		t.Error("the chart's pods carry no checksum/config annotation: a changed config would not roll them")
	}
	for _, pair := range [][2]any{
		{got.ServiceAccount, want.ServiceAccount},
		{got.ConfigMap, want.ConfigMap},
		{got.DaemonSet, want.DaemonSet},
	} {
		g, w := asJSON(t, pair[0]), asJSON(t, pair[1])
		if g != w {
			t.Errorf("chart and %s differ:\n%s", plainFile, lineDiff(g, w))
		}
	}
}

// lineDiff lists the lines only one side has (enough to find a field).
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b strings.Builder
	for _, l := range g {
		if !slices.Contains(w, l) {
			fmt.Fprintf(&b, "chart only: %s\n", l)
		}
	}
	for _, l := range w {
		if !slices.Contains(g, l) {
			fmt.Fprintf(&b, "plain only: %s\n", l)
		}
	}
	return b.String()
}

// TestDaemonSetContract holds the plain manifest (and so the chart) to
// what flowtap needs and promises: the three capabilities and nothing
// else, no privileged mode, host PID, the host's cgroup tree and BTF,
// probes and scrape annotations on the metrics port, resources.
func TestDaemonSetContract(t *testing.T) {
	ds := plain(t).DaemonSet
	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("hostPID is off: process IDs in events would not be the node's")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext.capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: true; the exact capabilities suffice")
	}
	var add, drop []string
	for _, c := range sc.Capabilities.Add {
		add = append(add, string(c))
	}
	for _, c := range sc.Capabilities.Drop {
		drop = append(drop, string(c))
	}
	slices.Sort(add)
	if !slices.Equal(add, []string{"BPF", "NET_ADMIN", "PERFMON"}) || !slices.Equal(drop, []string{"ALL"}) {
		t.Errorf("capabilities add %v drop %v, want add [BPF NET_ADMIN PERFMON] drop [ALL]", add, drop)
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Error("the container may run as root")
	}
	if sc.AllowPrivilegeEscalation == nil || !*sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be true: no_new_privs would keep the file capabilities from taking effect")
	}
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.ReadOnly
	}
	for _, p := range []string{"/sys/fs/cgroup", "/sys/kernel/btf", "/etc/flowtap"} {
		if ro, ok := mounts[p]; !ok || !ro {
			t.Errorf("%s: mounted %v, read-only %v; want a read-only mount", p, ok, ro)
		}
	}
	hostPaths := map[string]bool{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.HostPath.Path] = true
		}
	}
	if !hostPaths["/sys/fs/cgroup"] || !hostPaths["/sys/kernel/btf"] {
		t.Errorf("host paths %v, want /sys/fs/cgroup and /sys/kernel/btf", hostPaths)
	}
	if !slices.Contains(c.Args, fmt.Sprintf(":%d", metricsPort)) || !slices.Contains(c.Args, "--metrics-addr") {
		t.Errorf("args %v: no --metrics-addr :%d", c.Args, metricsPort)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != metricsPort || c.Ports[0].Name != "metrics" {
		t.Errorf("ports %+v, want one named metrics on %d", c.Ports, metricsPort)
	}
	for name, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("probe for %s: %+v", name, p)
		}
	}
	ann := ds.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != fmt.Sprint(metricsPort) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v", ann)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
}

// TestChartValues renders the chart with every documented value changed
// and finds each change in the objects.
func TestChartValues(t *testing.T) {
	o := render(t, "-f", "testdata/values-custom.yaml")
	ds := o.DaemonSet
	c := ds.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.example/flowtap:v9.9.9" {
		t.Errorf("image %q", c.Image)
	}
	if got := c.Resources.Limits.Memory().String(); got != "1Gi" {
		t.Errorf("memory limit %s, want 1Gi", got)
	}
	if tol := ds.Spec.Template.Spec.Tolerations; len(tol) != 1 || tol[0].Key != "dedicated" {
		t.Errorf("tolerations %+v", tol)
	}
	if !slices.Contains(c.Args, ":9500") || c.Ports[0].ContainerPort != 9500 || ds.Spec.Template.Annotations["prometheus.io/port"] != "9500" {
		t.Errorf("metrics port 9500 not applied: args %v ports %+v", c.Args, c.Ports)
	}
	cfg := o.ConfigMap.Data["pipelines.yaml"]
	for _, want := range []string{"name: web", "plugin: file", "ring_buffer_size: 67108864"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("pipelines.yaml lacks %q:\n%s", want, cfg)
		}
	}
	def := render(t).DaemonSet.Spec.Template.Annotations["checksum/config"]
	if ds.Spec.Template.Annotations["checksum/config"] == def {
		t.Error("checksum/config did not change with the config")
	}
	// Only sinks given: the default pipeline carries them.
	o = render(t, "--set", "sinks[0].plugin=file", "--set", "sinks[0].config.path=/var/log/flowtap/f.jsonl")
	if cfg := o.ConfigMap.Data["pipelines.yaml"]; !strings.Contains(cfg, "name: default") || !strings.Contains(cfg, "plugin: file") {
		t.Errorf("sinks value not in the default pipeline:\n%s", cfg)
	}
}

var (
	flowtapOnce sync.Once
	flowtapDir  string
	flowtapErr  error
)

// flowtapBin builds flowtap and its sink plugins from the main module.
func flowtapBin(t *testing.T) string {
	t.Helper()
	flowtapOnce.Do(func() {
		if flowtapDir, flowtapErr = os.MkdirTemp("", "flowtap-deploycheck-"); flowtapErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", flowtapDir+"/", "./cmd/flowtap", "./cmd/flowtap-sink-stdout", "./cmd/flowtap-sink-file")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			flowtapErr = fmt.Errorf("build flowtap: %w\n%s", err, out)
		}
	})
	if flowtapErr != nil {
		t.Fatal(flowtapErr)
	}
	return filepath.Join(flowtapDir, "flowtap")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if flowtapDir != "" {
		os.RemoveAll(flowtapDir)
	}
	os.Exit(code)
}

// TestPipelinesValidate runs 'flowtap config validate' on the pipelines
// file of the plain manifest and of the chart's renders: what the
// ConfigMap holds must be a config flowtap accepts.
func TestPipelinesValidate(t *testing.T) {
	bin := flowtapBin(t)
	dir := t.TempDir()
	for name, o := range map[string]objects{
		"plain":  plain(t),
		"chart":  render(t),
		"custom": render(t, "-f", "testdata/values-custom.yaml"),
	} {
		// Validating creates the file sink's file: the custom values'
		// placeholder becomes a path in the test's directory.
		cfg := strings.ReplaceAll(o.ConfigMap.Data["pipelines.yaml"], "FILE_SINK_PATH", filepath.Join(dir, "flows.jsonl"))
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "config", "validate", path).CombinedOutput(); err != nil {
			t.Errorf("%s pipelines.yaml: flowtap config validate: %v\n%s", name, err, out)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package configs

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flowtap/flowtap/events"
)

// EnvPrefix starts every environment variable that overrides a config
// key: FLOWTAP_ and the key's path in upper case with '_' for '.', e.g.
// FLOWTAP_CAPTURE_RING_BUFFER_SIZE for capture.ring_buffer_size.
const EnvPrefix = "FLOWTAP_"

// EnvSource is the Problem.File of a bad environment variable.
const EnvSource = "environment"

// EnvKeys returns every environment variable that overrides a config key,
// with the key: the leaves of capture, log and metrics. Pipelines are
// lists and have no environment variables.
func EnvKeys() map[string]string {
	out := map[string]string{}
	var walk func(path string, t reflect.Type)
	walk = func(path string, t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			key := join(path, f.Tag.Get("mapstructure"))
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				walk(key, f.Type)
				continue
			}
			out[EnvPrefix+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))] = key
		}
	}
	walk("capture", reflect.TypeFor[Capture]())
	walk("log", reflect.TypeFor[Log]())
	walk("metrics", reflect.TypeFor[Metrics]())
	return out
}

// ApplyEnv overrides capture, log and metrics settings from environment
// variables (environ as os.Environ returns it): they take precedence over
// the file. A value that does not parse, or a FLOWTAP_CAPTURE_*,
// FLOWTAP_LOG_* or FLOWTAP_METRICS_* variable that names no key, is a
// problem.
func (c *Config) ApplyEnv(environ []string) Problems {
	var ps Problems
	keys := EnvKeys()
	names := sortKeys(keys)
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix+"CAPTURE_") && !strings.HasPrefix(name, EnvPrefix+"LOG_") &&
			!strings.HasPrefix(name, EnvPrefix+"METRICS_") {
			continue
		}
		key, ok := keys[name]
		if !ok {
			hint := ""
			if s := events.Closest(name, names); s != "" {
				hint = fmt.Sprintf(": did you mean %s?", s)
			}
			ps.add(EnvSource, "", name, "names no config key%s (valid: %s)", hint, strings.Join(names, ", "))
			continue
		}
		if err := c.setKey(key, val); err != nil {
			ps.add(EnvSource, "", name, "%v", err)
		}
	}
	return ps
}

// setKey sets a capture or log leaf from its text.
func (c *Config) setKey(key, text string) error {
	v := reflect.ValueOf(c).Elem()
	for part := range strings.SplitSeq(key, ".") {
		t := v.Type()
		found := false
		for i := 0; i < t.NumField(); i++ {
			if t.Field(i).Tag.Get("mapstructure") == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return fmt.Errorf("no config key %q", key)
		}
	}
	switch {
	case v.Type() == durationType, v.Kind() == reflect.Pointer && v.Type().Elem() == durationType:
		d, err := time.ParseDuration(text)
		if err != nil {
			return fmt.Errorf("%q is not a duration: write a number and a unit, e.g. 5s", text)
		}
		if v.Kind() == reflect.Pointer {
			v.Set(reflect.ValueOf(&d))
		} else {
			v.SetInt(int64(d))
		}
	case v.Kind() == reflect.String:
		v.SetString(text)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(text)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", text)
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Uint16:
		n, err := strconv.ParseUint(text, 10, 16)
		if err != nil {
			return fmt.Errorf("%q is not a whole number from 0 to 65535", text)
		}
		v.SetUint(n)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var list []string
		for item := range strings.SplitSeq(text, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		v.Set(reflect.ValueOf(list))
	case v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return fmt.Errorf("%q is not a bool: use true or false", text)
		}
		v.Set(reflect.ValueOf(&b))
	default:
		return fmt.Errorf("config key %q cannot be set from the environment", key)
	}
	return nil
}

// ChangedCaptureKeys returns the capture keys (e.g.
// "capture.ring_buffer_size") whose values differ between c and other,
// sorted.
func (c *Config) ChangedCaptureKeys(other *Config) []string {
	var out []string
	a, b := reflect.ValueOf(c.Capture), reflect.ValueOf(other.Capture)
	var walk func(path string, a, b reflect.Value)
	walk = func(path string, a, b reflect.Value) {
		t := a.Type()
		for i := 0; i < t.NumField(); i++ {
			key := join(path, t.Field(i).Tag.Get("mapstructure"))
			fa, fb := a.Field(i), b.Field(i)
			if fa.Kind() == reflect.Struct {
				walk(key, fa, fb)
				continue
			}
			if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
				out = append(out, key)
			}
		}
	}
	walk("capture", a, b)
	sort.Strings(out)
	return out
}

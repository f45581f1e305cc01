// SPDX-License-Identifier: Apache-2.0

package configs

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/flowtap/flowtap/events"
)

// checkShape walks the raw settings a file decoded to and reports, all at
// once, every key the Config type has no place for and every value of the
// wrong type, naming the key's full path and what would be valid. It
// removes what it reports from raw (a key, a list item), so that the rest
// decodes into a Config and the later rounds of validation still judge
// it: one run reports every problem.
func checkShape(file string, raw map[string]any) Problems {
	var ps Problems
	s := shapeChecker{file: file, ps: &ps}
	s.value("", "", raw, reflect.TypeFor[Config]())
	return ps
}

type shapeChecker struct {
	file string
	ps   *Problems
}

var durationType = reflect.TypeFor[time.Duration]()

// value checks v against type t at path; pipeline names the pipeline the
// path is inside. It reports whether v fits (a struct or list whose parts
// do not all fit loses those parts, and fits).
func (s shapeChecker) value(pipeline, path string, v any, t reflect.Type) bool {
	if v == nil {
		return true // an empty key ("queue:") means the defaults
	}
	if t == durationType {
		str, ok := v.(string)
		if !ok {
			s.ps.add(s.file, pipeline, path, "must be a duration such as \"500ms\", \"5s\" or \"10m\", not %s", describe(v))
			return false
		}
		if _, err := time.ParseDuration(str); err != nil {
			s.ps.add(s.file, pipeline, path, "%q is not a duration: write a number and a unit (ns, us, ms, s, m, h), e.g. \"5s\"", str)
			return false
		}
		return true
	}
	switch t.Kind() {
	case reflect.Pointer:
		return s.value(pipeline, path, v, t.Elem())
	case reflect.String:
		if _, ok := v.(string); !ok {
			s.ps.add(s.file, pipeline, path, "must be a string, not %s", describe(v))
			return false
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			s.ps.add(s.file, pipeline, path, "must be true or false, not %s", describe(v))
			return false
		}
	case reflect.Int:
		if _, ok := integer(v); !ok {
			s.ps.add(s.file, pipeline, path, "must be a whole number, not %s", describe(v))
			return false
		}
	case reflect.Map:
		if _, ok := v.(map[string]any); !ok {
			s.ps.add(s.file, pipeline, path, "must be a map of keys to values, not %s", describe(v))
			return false
		}
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			hint := ""
			if str, isStr := v.(string); isStr && t.Elem().Kind() == reflect.String {
				hint = fmt.Sprintf(": write [%s]", str)
			}
			s.ps.add(s.file, pipeline, path, "must be a list, not %s%s", describe(v), hint)
			return false
		}
		for i, item := range list {
			p := pipeline
			if path == "pipelines" {
				p = pipelineName(item, i)
			}
			if !s.value(p, fmt.Sprintf("%s[%d]", path, i), item, t.Elem()) {
				list[i] = nil // decodes as the element's zero value
			}
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			s.ps.add(s.file, pipeline, path, "must be a map with keys %s, not %s", strings.Join(structKeys(t), ", "), describe(v))
			return false
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if tag := f.Tag.Get("mapstructure"); tag != "" && tag != "-" {
				fields[tag] = f.Type
			}
		}
		for _, k := range sortKeys(m) {
			ft, known := fields[k]
			if !known {
				valid := structKeys(t)
				hint := ""
				if c := events.Closest(k, valid); c != "" {
					hint = fmt.Sprintf(": did you mean %q?", c)
				}
				s.ps.add(s.file, pipeline, join(path, k), "unknown key%s (valid keys here: %s)", hint, strings.Join(valid, ", "))
				delete(m, k)
				continue
			}
			if !s.value(pipeline, join(path, k), m[k], ft) {
				delete(m, k)
			}
		}
	}
	return true
}

// pipelineName is the name of raw pipeline item i, for messages: its
// "name" if it has one, else "#i".
func pipelineName(item any, i int) string {
	if m, ok := item.(map[string]any); ok {
		if n, ok := m["name"].(string); ok && n != "" {
			return n
		}
	}
	return fmt.Sprintf("#%d", i)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// structKeys lists the mapstructure keys of struct t, in field order.
func structKeys(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("mapstructure"); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

// integer converts the whole numbers YAML, TOML and JSON decode to.
func integer(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case uint64:
		if n > math.MaxInt64 {
			return 0, false
		}
		return int64(n), true
	case float64:
		if n != math.Trunc(n) || math.Abs(n) > 1<<53 {
			return 0, false
		}
		return int64(n), true
	}
	return 0, false
}

// describe names a raw value's type for messages, with the value.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case bool:
		return fmt.Sprintf("the bool %v", x)
	case int, int64, int32, uint64:
		return fmt.Sprintf("the number %v", x)
	case float64:
		return fmt.Sprintf("the number %v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	}
	return fmt.Sprintf("a %T", v)
}

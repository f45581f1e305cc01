package configs

import "fmt"

// Values of Sink.OnFailure.
const (
	// OnFailureStop stops flowtap with the sink's error (the default).
	OnFailureStop = "stop"
	// OnFailureDisable drops the failed sink; the other sinks go on.
	OnFailureDisable = "disable"
)

// validateSink checks the values of a sink's delivery settings (queue,
// restart, on_failure); where names the sink in messages. The sha256
// pin is checked when the plugin starts (plugins/host).
func validateSink(where string, s Sink) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
	}
	switch s.Queue.Policy {
	case "", "block", "drop_newest", "drop_oldest":
	default:
		bad("queue.policy %q: use block (the default), drop_newest or drop_oldest", s.Queue.Policy)
	}
	if s.Queue.Size < 0 {
		bad("queue.size %d: must be 0 (the default, 8192) or more", s.Queue.Size)
	}
	if s.Restart.MaxAttempts < 0 {
		bad("restart.max_attempts %d: must be 0 (the default, 5) or more", s.Restart.MaxAttempts)
	}
	if s.Restart.InitialBackoff < 0 || s.Restart.MaxBackoff < 0 {
		bad("restart backoffs must not be negative")
	}
	if s.Restart.MaxBackoff > 0 && s.Restart.InitialBackoff > s.Restart.MaxBackoff {
		bad("restart.initial_backoff %s is more than restart.max_backoff %s", s.Restart.InitialBackoff, s.Restart.MaxBackoff)
	}
	switch s.OnFailure {
	case "", OnFailureStop, OnFailureDisable:
	default:
		bad("on_failure %q: use stop (the default) or disable", s.OnFailure)
	}
	return errs
}

package configs

// Values of Sink.OnFailure.
const (
	// OnFailureStop stops flowtap with the sink's error (the default).
	OnFailureStop = "stop"
	// OnFailureDisable drops the failed sink; the other sinks go on.
	OnFailureDisable = "disable"
)

package workflows

// Error types of the application errors workflows return, matched with
// temporal.ApplicationError.Type(). The activities' own error types are in
// activities/errors.go; each name has one meaning.
const (
	// ErrTypeTaskRunFailed: a RunTask ended without a successful job (every
	// attempt failed, or the task could not be submitted).
	ErrTypeTaskRunFailed = "TaskRunFailed"
	// ErrTypeResolveStart: a Kafka partition consumer could not resolve its
	// start or reset position (earliest, latest, a time) to an offset.
	ErrTypeResolveStart = "ResolveStart"
)

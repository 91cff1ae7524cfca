package endpoint

// The helpers of the external tests (package endpoint_test, e2e_test.go)
// that run the endpoint in front of a real engine: the root package imports
// this one, so only an external test package may import the root.
var (
	StartServerForTest = startServer
	NewOriginForTest   = newOrigin
	GetForTest         = get
)

package transport

// The helpers of the external tests (package transport_test) that run the
// transport over a real engine: the root package imports this one, so only
// an external test package may import the root.
var (
	NewTransportForTest = newTransport
	GetForTest          = get
	StartFarmForTest    = startFarm
)

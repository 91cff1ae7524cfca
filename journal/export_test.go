package journal

// Test hooks into the record format (record.go).
var (
	FrameRecord = frameRecord
	// RecordPayload returns the payload of a framed record, or v itself
	// when it is unframed.
	RecordPayload = func(v []byte) []byte {
		if len(v) > 0 && v[0] == recordFramed {
			return v[recordHeader:]
		}
		return v
	}
)

// SetCreateHook sets the hook that runs between a new journal's
// initialisation under its temporary name and its link into place.
func SetCreateHook(f func(tmp string)) { createHook = f }

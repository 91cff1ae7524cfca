package main

import (
	"github.com/proxyhealth/proxyhealth/httpapi"
	"github.com/proxyhealth/proxyhealth/projections"
)

// poolOf is the API's pool body for the engine's live status.
func poolOf(live *projections.Live) httpapi.Pool { return httpapi.PoolOf(live.Summary()) }

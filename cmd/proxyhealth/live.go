package main

import (
	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/httpapi"
)

// poolOf is the API's pool body for the engine's live status.
func poolOf(s proxyhealth.StatusReader) httpapi.Pool { return httpapi.PoolOf(s.Summary()) }

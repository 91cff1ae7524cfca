package proxyhealth

import "github.com/proxyhealth/proxyhealth/journal"

// WithJournalOptions returns cfg with extra options for its bbolt journal
// (fault injection in tests).
func WithJournalOptions(cfg Config, opts ...journal.BoltOption) Config {
	cfg.journalOptions = append(cfg.journalOptions, opts...)
	return cfg
}

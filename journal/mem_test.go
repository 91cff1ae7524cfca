package journal_test

import (
	"testing"

	"github.com/proxyhealth/proxyhealth/journal"
	"github.com/proxyhealth/proxyhealth/journal/journaltest"
)

func TestMemContract(t *testing.T) {
	journaltest.Run(t, journaltest.Harness{
		Open: func(t *testing.T) journal.Journal { return journal.NewMem() },
		Damage: func(t *testing.T, j journal.Journal) journal.Journal {
			j.(*journal.Mem).CorruptForTest(j.Head() / 2)
			return j
		},
	})
}

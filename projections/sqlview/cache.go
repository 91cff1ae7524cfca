package sqlview

import (
	"fmt"

	"github.com/proxyhealth/proxyhealth/events"
	"github.com/proxyhealth/proxyhealth/events/packed"
)

// stateCache is the committed state of every proxy in the view, encoded
// (packed.Encode: about 110 bytes a proxy, where an events.State is 408
// and its strings); a state the encoding cannot give back exactly (odd
// times, from hand-made events) is kept whole.
type stateCache struct {
	enc   map[string][]byte
	whole map[string]*events.State
	buf   []byte
}

func newStateCache() *stateCache {
	return &stateCache{enc: map[string][]byte{}, whole: map[string]*events.State{}}
}

// get returns the state of proxy id; false if the cache has none.
func (c *stateCache) get(id string) (events.State, bool, error) {
	if b, ok := c.enc[id]; ok {
		s, err := packed.Decode(b, id)
		if err != nil {
			return events.State{}, false, fmt.Errorf("sqlview: the cached state of proxy %s: %w", id, err)
		}
		return s, true, nil
	}
	if s, ok := c.whole[id]; ok {
		return *s, true, nil
	}
	return events.State{}, false, nil
}

// has reports whether the cache holds proxy id.
func (c *stateCache) has(id string) bool {
	if _, ok := c.enc[id]; ok {
		return true
	}
	_, ok := c.whole[id]
	return ok
}

// put stores *s as the state of proxy id.
func (c *stateCache) put(id string, s *events.State) {
	var ok bool
	c.buf, ok = packed.Encode(c.buf[:0], *s, id)
	if ok {
		delete(c.whole, id)
		if old := c.enc[id]; cap(old) >= len(c.buf) && cap(old) <= len(c.buf)+16 {
			c.enc[id] = append(old[:0], c.buf...) // the old one's allocation fits
		} else {
			c.enc[id] = append([]byte(nil), c.buf...)
		}
		return
	}
	delete(c.enc, id)
	w := *s
	c.whole[id] = &w
}

// len is the number of proxies cached.
func (c *stateCache) len() int { return len(c.enc) + len(c.whole) }

// del forgets proxy id.
func (c *stateCache) del(id string) {
	delete(c.enc, id)
	delete(c.whole, id)
}

// ids appends the IDs of every cached proxy to dst.
func (c *stateCache) ids(dst []string) []string {
	for id := range c.enc {
		dst = append(dst, id)
	}
	for id := range c.whole {
		dst = append(dst, id)
	}
	return dst
}

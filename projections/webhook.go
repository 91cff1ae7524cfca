package projections

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of WebhookOptions.
const (
	DefaultWebhookTimeout     = 5 * time.Second
	DefaultWebhookQueueSize   = 256
	DefaultWebhookMaxAttempts = 6
	DefaultWebhookBackoffBase = 500 * time.Millisecond
	DefaultWebhookBackoffMax  = 30 * time.Second
)

// WebhookOptions configures one webhook.
type WebhookOptions struct {
	// URL receives the notifications as JSON POSTs (http or https). It may
	// hold secrets: it is never logged or put in errors beyond scheme://host.
	URL string
	// Types restricts the notification types sent (empty: all).
	Types []string
	// Headers are added to every request (e.g. Authorization).
	Headers map[string]string
	// Timeout bounds each attempt (default 5 s).
	Timeout time.Duration
	// QueueSize bounds the notifications waiting for this webhook (default
	// 256); when full, the oldest is dropped and counted.
	QueueSize int
	// MaxAttempts bounds the attempts per notification (default 6). Network
	// errors, timeouts, HTTP 408, 429 and 5xx are retried; other statuses
	// (including redirects, which are not followed) are not.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the wait between attempts:
	// min(base·2^(attempt−1), max), of which a random half is jitter
	// (defaults 500 ms and 30 s).
	BackoffBase, BackoffMax time.Duration
	// Secret, when set, signs every body: the request carries
	// "X-Proxyhealth-Signature: sha256=<hex HMAC-SHA256 of the body with
	// Secret as the key>", so the receiver can tell it came from this
	// engine and was not changed. Never logged.
	Secret string
}

// SignatureHeader is the header that carries a webhook body's HMAC-SHA256
// signature (WebhookOptions.Secret).
const SignatureHeader = "X-Proxyhealth-Signature"

// Sign returns the SignatureHeader value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// ValidateWebhook reports what NewNotifier would refuse in the i-th
// webhook's options (the error never shows more of the URL than
// scheme://host).
func ValidateWebhook(i int, o WebhookOptions) error {
	_, err := webhookTarget(i, o)
	return err
}

// webhookTarget checks o and returns the webhook's scheme://host.
func webhookTarget(i int, o WebhookOptions) (string, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		target := "URL does not parse" // the parse error would quote the URL
		if err == nil {
			target = u.Scheme + "://" + u.Host
		}
		return "", fmt.Errorf("%w: webhook %d (%s): the URL must be http:// or https:// with a host", ErrBadOption, i, target)
	}
	target := u.Scheme + "://" + u.Host
	for _, t := range o.Types {
		if !notificationTypes[t] {
			return "", fmt.Errorf("%w: webhook %d (%s): unknown notification type %q (known: proxy_down, proxy_recovered, pool_degraded, pool_recovered)", ErrBadOption, i, target, t)
		}
	}
	if o.Timeout < 0 || o.QueueSize < 0 || o.MaxAttempts < 0 || o.BackoffBase < 0 || o.BackoffMax < 0 {
		return "", fmt.Errorf("%w: webhook %d (%s): timeout, queue size, attempts and backoffs must not be negative", ErrBadOption, i, target)
	}
	return target, nil
}

// WebhookStats are one webhook's delivery counters.
type WebhookStats struct {
	// Target is the webhook's scheme://host (safe to show).
	Target    string `json:"target"`
	Delivered uint64 `json:"delivered"`
	// Failed counts notifications given up after MaxAttempts or a
	// non-retryable answer.
	Failed uint64 `json:"failed"`
	// Dropped counts notifications dropped unsent: queue overflow (oldest
	// first) or Close.
	Dropped uint64 `json:"dropped"`
	Retries uint64 `json:"retries"`
	Queued  int    `json:"queued"`
}

// webhook delivers to one URL from its own goroutine and bounded queue, so
// a dead endpoint delays nobody else.
type webhook struct {
	target string
	url    string
	o      WebhookOptions
	types  map[string]bool
	client *http.Client
	log    *slog.Logger

	mu       sync.Mutex
	queue    []webhookItem
	inflight bool
	closing  bool

	wake      chan struct{}
	draining  chan struct{}
	drainOnce sync.Once
	stop      chan struct{}
	stopOnce  sync.Once
	stopCtx   context.Context
	cancel    context.CancelFunc
	done      chan struct{}

	delivered, failed, dropped, retries atomic.Uint64
}

type webhookItem struct {
	typ  string
	seq  uint64
	body []byte
}

var notificationTypes = map[string]bool{NotifyProxyDown: true, NotifyProxyRecovered: true, NotifyPoolDegraded: true, NotifyPoolRecovered: true}

func newWebhook(i int, o WebhookOptions, client *http.Client, log *slog.Logger) (*webhook, error) {
	target, err := webhookTarget(i, o)
	if err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultWebhookTimeout
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultWebhookQueueSize
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultWebhookMaxAttempts
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = DefaultWebhookBackoffBase
	}
	if o.BackoffMax < o.BackoffBase {
		o.BackoffMax = max(DefaultWebhookBackoffMax, o.BackoffBase)
	}
	var types map[string]bool
	for _, t := range o.Types { // validated by webhookTarget
		if types == nil {
			types = map[string]bool{}
		}
		types[t] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &webhook{
		target: target, url: o.URL, o: o, types: types, client: client, log: log.With("webhook", target),
		wake: make(chan struct{}, 1), draining: make(chan struct{}), stop: make(chan struct{}),
		stopCtx: ctx, cancel: cancel, done: make(chan struct{}),
	}, nil
}

// enqueue queues a notification, dropping the oldest when full.
func (w *webhook) enqueue(n Notification, body []byte) {
	if w.types != nil && !w.types[n.Type] {
		return
	}
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		w.dropped.Add(1)
		return
	}
	if len(w.queue) >= w.o.QueueSize {
		old := w.queue[0]
		w.queue = w.queue[1:]
		w.dropped.Add(1)
		w.log.Warn("webhook queue full; dropped the oldest notification", "type", old.typ, "seq", old.seq, "queue_size", w.o.QueueSize)
	}
	w.queue = append(w.queue, webhookItem{typ: n.Type, seq: n.Seq, body: body})
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *webhook) pop() (webhookItem, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		w.queue = nil // let a large burst's array go
		return webhookItem{}, false
	}
	it := w.queue[0]
	w.queue[0] = webhookItem{}
	w.queue = w.queue[1:]
	w.inflight = true
	return it, true
}

func (w *webhook) run() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		if it, ok := w.pop(); ok {
			w.deliver(it)
			w.mu.Lock()
			w.inflight = false
			w.mu.Unlock()
			continue
		}
		select {
		case <-w.wake:
		case <-w.draining:
			return // nothing queued, and nothing more will be
		case <-w.stop:
			return
		}
	}
}

// deliver POSTs one notification, retrying with backoff.
func (w *webhook) deliver(it webhookItem) {
	for attempt := 1; ; attempt++ {
		retry, err := w.post(it)
		if err == nil {
			w.delivered.Add(1)
			return
		}
		select {
		case <-w.stop:
			w.dropped.Add(1)
			return
		default:
		}
		if !retry || attempt >= w.o.MaxAttempts {
			w.failed.Add(1)
			w.log.Warn("webhook delivery failed; giving up", "type", it.typ, "seq", it.seq, "attempts", attempt, "error", err)
			return
		}
		w.retries.Add(1)
		t := time.NewTimer(w.backoff(attempt))
		select {
		case <-t.C:
		case <-w.stop:
			t.Stop()
			w.dropped.Add(1)
			return
		}
	}
}

// backoff returns the wait after a failed attempt: half fixed, half
// random.
func (w *webhook) backoff(attempt int) time.Duration {
	d := w.o.BackoffBase
	for i := 1; i < attempt && d < w.o.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, w.o.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

// post makes one attempt; retry says whether a failure may be retried.
// Errors never contain the URL.
func (w *webhook) post(it webhookItem) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(w.stopCtx, w.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(it.body))
	if err != nil {
		return false, errors.New("cannot build the request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "proxyhealth-notifier")
	req.Header.Set("X-Proxyhealth-Event", it.typ)
	req.Header.Set("X-Proxyhealth-Seq", strconv.FormatUint(it.seq, 10))
	for k, v := range w.o.Headers {
		req.Header.Set(k, v)
	}
	if w.o.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(w.o.Secret, it.body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %v", w.o.Timeout)
		}
		return true, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return true, fmt.Errorf("HTTP %d", c)
	default:
		return false, fmt.Errorf("HTTP %d (not retried)", c)
	}
}

// drain stops accepting notifications; run exits once the queue is empty.
func (w *webhook) drain() {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	w.drainOnce.Do(func() { close(w.draining) })
}

// abort stops delivery at once, cancelling any request in flight, and
// returns how many notifications were left undelivered.
func (w *webhook) abort() int {
	w.mu.Lock()
	w.closing = true
	left := len(w.queue)
	if w.inflight {
		left++
	}
	w.dropped.Add(uint64(len(w.queue)))
	w.queue = nil
	w.mu.Unlock()
	w.stopOnce.Do(func() { close(w.stop) })
	w.cancel()
	return left
}

func (w *webhook) stats() WebhookStats {
	w.mu.Lock()
	q := len(w.queue)
	w.mu.Unlock()
	return WebhookStats{Target: w.target, Delivered: w.delivered.Load(), Failed: w.failed.Load(), Dropped: w.dropped.Load(), Retries: w.retries.Load(), Queued: q}
}

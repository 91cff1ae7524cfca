package transport_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"

	"github.com/proxyhealth/proxyhealth"
	"github.com/proxyhealth/proxyhealth/transport"
)

// onePicker stands in for the engine (*proxyhealth.Engine): it always
// picks the same proxy and remembers the outcomes reported.
type onePicker struct {
	proxy    proxyhealth.Picked
	mu       sync.Mutex
	outcomes []proxyhealth.Outcome
}

func (p *onePicker) Pick(proxyhealth.PickRequest) (proxyhealth.Picked, error) { return p.proxy, nil }

func (p *onePicker) ReportOutcome(o proxyhealth.Outcome) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.outcomes = append(p.outcomes, o)
	return nil
}

func Example() {
	// A stand-in proxy on loopback that answers absolute-form requests
	// itself.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the proxy, for %s", r.URL.Host)
	}))
	defer proxy.Close()
	proxyURL, _ := url.Parse(proxy.URL)

	picker := &onePicker{}
	picker.proxy.ID, picker.proxy.URL = "proxy-1", proxyURL

	// With an engine: transport.New(engine, transport.Options{...}).
	tr, err := transport.New(picker, transport.Options{Strategy: proxyhealth.RoundRobin})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tr.Close()
	client := &http.Client{Transport: tr}

	resp, err := client.Get("http://example.test/")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	for _, o := range picker.outcomes {
		fmt.Printf("outcome: proxy %s ok=%v class=%q\n", o.ProxyID, o.OK, o.Class)
	}
	// Output:
	// 200 hello from the proxy, for example.test
	// outcome: proxy proxy-1 ok=true class=""
}

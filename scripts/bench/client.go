package main

// The load generator's HTTP client and the API calls it makes.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns * 2,
			MaxIdleConnsPerHost: conns * 2,
			MaxConnsPerHost:     conns,
			DisableCompression:  true,
		},
	}
}

func post(c *http.Client, url, jwt string, body any, into any) (int, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if jwt != "" {
		req.Header.Set("R-Auth", jwt)
	}
	return do(c, req, into)
}

func do(c *http.Client, req *http.Request, into any) (int, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if into != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(body, into); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

type tokenPair struct {
	JWT          string `json:"jwt"`
	RefreshToken string `json:"refreshToken"`
}

// seed logs the partner in and creates the companies through the API.
func seed(c *http.Client, t *target, n, conns int) error {
	var partner tokenPair
	if code, err := post(c, t.base+"/api/v1/auth/login", "", map[string]string{"apiKey": t.partnerKey}, &partner); err != nil || code != 200 {
		return fmt.Errorf("partner login: %d %v", code, err)
	}
	t.companies = make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, conns)
	for range conns {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				var created struct{ APIKey string }
				code, err := post(c, t.base+"/api/v1/companies", partner.JWT, map[string]string{"name": "company " + strconv.Itoa(i), "externalId": "ext-" + strconv.Itoa(i)}, &created)
				if err != nil || code != 201 {
					errc <- fmt.Errorf("create company: %d %v", code, err)
					return
				}
				t.companies[i] = created.APIKey
			}
		})
	}
	wg.Wait()
	close(errc)
	return <-errc
}

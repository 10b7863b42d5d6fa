// Package conformance reads what Kubernetes' storage e2e suite reports (make conformance:
// ginkgo's JUnit file); its tests also check the test-driver manifests of
// test/e2e/conformance.
package conformance

import (
	"encoding/xml"
	"os"
	"sort"
	"strings"
	"time"
)

// Result is one run of the suite (a test-driver manifest) as ginkgo's JUnit
// report has it.
type Result struct {
	Name, Manifest, Focus string
	Took                  time.Duration
	Cases                 []Case
}

// Case is one test that ran (passed, failed) or was skipped at run time.
type Case struct {
	Name, State, Message string // State: passed, failed, skipped
	Seconds              float64
}

// Count is how many of the run's tests ended in state.
func (r Result) Count(state string) int {
	n := 0
	for _, c := range r.Cases {
		if c.State == state {
			n++
		}
	}
	return n
}

// ReadJUnit reads ginkgo's JUnit report: the specs that ran or were skipped
// at run time, with the suite's reason (its message "skipped - <reason>").
// Specs the focus and skip did not select ("skipped" with no reason) are
// left out; so are the suite's setup nodes unless they failed.
func ReadJUnit(path string) (Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Result{}, err
	}
	type message struct {
		Message string `xml:"message,attr"`
	}
	var doc struct {
		Suites []struct {
			Cases []struct {
				Name    string   `xml:"name,attr"`
				Status  string   `xml:"status,attr"`
				Time    float64  `xml:"time,attr"`
				Skipped *message `xml:"skipped"`
				Failure *message `xml:"failure"`
				Error   *message `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		return Result{}, err
	}
	var res Result
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			tc := Case{Name: strings.TrimPrefix(c.Name, "[It] "), Seconds: c.Time}
			failure := c.Failure
			if failure == nil {
				failure = c.Error
			}
			switch {
			case failure != nil || c.Status == "failed" || c.Status == "panicked" || c.Status == "timedout" || c.Status == "interrupted":
				tc.State = "failed"
				if failure != nil {
					tc.Message = firstLine(failure.Message)
				}
			case isSetupNode(c.Name):
				continue
			case c.Status == "skipped" || c.Skipped != nil:
				msg := ""
				if c.Skipped != nil {
					msg = strings.TrimSpace(strings.TrimPrefix(c.Skipped.Message, "skipped"))
					msg = strings.TrimSpace(strings.TrimPrefix(msg, "-"))
				}
				if msg == "" {
					continue // not selected by the focus and skip
				}
				tc.State, tc.Message = "skipped", firstLine(msg)
			case c.Status == "passed":
				tc.State = "passed"
			default:
				continue // pending
			}
			res.Cases = append(res.Cases, tc)
		}
	}
	sort.Slice(res.Cases, func(i, j int) bool { return res.Cases[i].Name < res.Cases[j].Name })
	return res, nil
}

// isSetupNode: ginkgo reports its suite-level nodes as test cases too.
func isSetupNode(name string) bool {
	for _, p := range []string{"[SynchronizedBeforeSuite]", "[SynchronizedAfterSuite]", "[ReportAfterSuite]", "[BeforeSuite]", "[AfterSuite]"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

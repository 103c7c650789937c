// Package appjson reads an app's app.json (Heroku's app manifest with
// Dokku's extensions: healthchecks, scripts.dokku, cron, formation) and the
// legacy Dokku CHECKS file.
package appjson

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/robfig/cron/v3"

	"github.com/berth-paas/berth/internal/validate"
)

// maxSize bounds what is read from app.json.
const maxSize = 1 << 20

// AppJSON is the part of app.json berth acts on.
type AppJSON struct {
	Name    string `json:"name,omitempty"`
	Scripts struct {
		Dokku struct {
			Predeploy  string `json:"predeploy,omitempty"`
			Postdeploy string `json:"postdeploy,omitempty"`
		} `json:"dokku"`
	} `json:"scripts"`
	Env          map[string]EnvVar    `json:"env,omitempty"`
	Formation    map[string]Formation `json:"formation,omitempty"`
	Healthchecks map[string][]Check   `json:"healthchecks,omitempty"`
	Cron         []CronEntry          `json:"cron,omitempty"`
}

// EnvVar is an app.json env entry: a plain string or an object.
type EnvVar struct {
	Description string `json:"description,omitempty"`
	Value       string `json:"value,omitempty"`
	// Generator "secret" makes a random value on first deploy.
	Generator string `json:"generator,omitempty"`
	Required  *bool  `json:"required,omitempty"`
}

// UnmarshalJSON accepts "KEY": "value" as well as the object form.
func (e *EnvVar) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*e = EnvVar{Value: s}
		return nil
	}
	type plain EnvVar
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return errors.New("each env entry must be a string or an object with value, generator, required or description")
	}
	*e = EnvVar(p)
	return nil
}

// Formation is an app.json formation entry.
type Formation struct {
	Quantity *int   `json:"quantity,omitempty"`
	Size     string `json:"size,omitempty"`
}

// Header is one extra HTTP header of a check.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Check is one healthcheck of a process type, with Dokku's fields. Zero
// numbers mean "use the default".
type Check struct {
	Type         string   `json:"type,omitempty"` // startup (default), readiness, liveness
	Name         string   `json:"name,omitempty"`
	Path         string   `json:"path,omitempty"`
	Port         int      `json:"port,omitempty"`
	Scheme       string   `json:"scheme,omitempty"`
	Content      string   `json:"content,omitempty"`
	Command      []string `json:"command,omitempty"`
	Listening    bool     `json:"listening,omitempty"`
	Uptime       int      `json:"uptime,omitempty"`
	Attempts     int      `json:"attempts,omitempty"`
	Timeout      int      `json:"timeout,omitempty"`
	Wait         int      `json:"wait,omitempty"`
	InitialDelay int      `json:"initialDelay,omitempty"`
	HTTPHeaders  []Header `json:"httpHeaders,omitempty"`
	Warn         bool     `json:"warn,omitempty"`
}

// CronEntry is one scheduled command.
type CronEntry struct {
	Command  string `json:"command"`
	Schedule string `json:"schedule"`
}

// ID is a stable short identifier of a cron entry.
func (c CronEntry) ID() string {
	h := uint32(2166136261)
	for _, b := range []byte(c.Schedule + "\x00" + c.Command) {
		h = (h ^ uint32(b)) * 16777619
	}
	return fmt.Sprintf("%08x", h)
}

// Parse reads and validates app.json.
func Parse(data []byte) (*AppJSON, error) {
	if len(data) > maxSize {
		return nil, fmt.Errorf("app.json is larger than %d KiB", maxSize>>10)
	}
	var a AppJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("app.json: %w", err)
	}
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("app.json: %w", err)
	}
	return &a, nil
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a cron schedule as app.json's cron entries use it
// (five fields, or @hourly-style descriptors).
func ParseSchedule(s string) (cron.Schedule, error) { return cronParser.Parse(s) }

func (a *AppJSON) validate() error {
	for k, v := range a.Env {
		if err := validate.EnvKey(k); err != nil {
			return fmt.Errorf("env: %w", err)
		}
		if v.Generator != "" && v.Generator != "secret" {
			return fmt.Errorf("env %s: unknown generator %q (only \"secret\")", k, v.Generator)
		}
	}
	for p, f := range a.Formation {
		if err := validate.ProcessType(p); err != nil {
			return fmt.Errorf("formation: %w", err)
		}
		if f.Quantity != nil && (*f.Quantity < 0 || *f.Quantity > 100) {
			return fmt.Errorf("formation %s: quantity must be between 0 and 100", p)
		}
	}
	for p, checks := range a.Healthchecks {
		if err := validate.ProcessType(p); err != nil {
			return fmt.Errorf("healthchecks: %w", err)
		}
		for i, c := range checks {
			if err := c.validate(); err != nil {
				return fmt.Errorf("healthchecks.%s[%d]: %w", p, i, err)
			}
		}
	}
	for i, c := range a.Cron {
		if strings.TrimSpace(c.Command) == "" {
			return fmt.Errorf("cron[%d]: command is empty", i)
		}
		if _, err := ParseSchedule(c.Schedule); err != nil {
			return fmt.Errorf("cron[%d]: invalid schedule %q: %v", i, c.Schedule, err)
		}
	}
	return nil
}

func (c Check) validate() error {
	switch c.Type {
	case "", "startup", "readiness", "liveness":
	default:
		return fmt.Errorf("unknown type %q (startup, readiness or liveness)", c.Type)
	}
	strategies := 0
	if c.Path != "" {
		strategies++
		if !strings.HasPrefix(c.Path, "/") {
			return fmt.Errorf("path %q must start with /", c.Path)
		}
		if _, err := url.ParseRequestURI(c.Path); err != nil {
			return fmt.Errorf("invalid path %q", c.Path)
		}
	}
	if len(c.Command) > 0 {
		strategies++
	}
	if c.Uptime > 0 {
		strategies++
	}
	if c.Listening {
		strategies++
	}
	if strategies > 1 {
		return errors.New("set only one of path, command, uptime and listening")
	}
	if strategies == 0 && c.Content != "" {
		return errors.New("content needs a path")
	}
	switch c.Scheme {
	case "", "http", "https":
	default:
		return fmt.Errorf("scheme %q must be http or https", c.Scheme)
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("port %d is out of range", c.Port)
	}
	for _, n := range []int{c.Attempts, c.Timeout, c.Wait, c.InitialDelay, c.Uptime} {
		if n < 0 || n > 3600 {
			return errors.New("attempts, timeout, wait, initialDelay and uptime must be between 0 and 3600")
		}
	}
	for _, h := range c.HTTPHeaders {
		if h.Name == "" || strings.ContainsAny(h.Name+h.Value, "\r\n") {
			return fmt.Errorf("invalid HTTP header %q", h.Name)
		}
	}
	return nil
}

// ParseChecks reads a legacy Dokku CHECKS file: WAIT=, TIMEOUT= and
// ATTEMPTS= lines, then "PATH [expected content]" lines (a path may be a
// full http(s)://host/path URL). The result are startup checks for web.
func ParseChecks(data []byte) ([]Check, error) {
	var out []Check
	var wait, timeout, attempts int
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && !strings.ContainsAny(k, " /") {
			num, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || num < 0 || num > 3600 {
				return nil, fmt.Errorf("CHECKS line %d: %s needs a number of seconds (0-3600)", n, k)
			}
			switch strings.TrimSpace(k) {
			case "WAIT":
				wait = num
			case "TIMEOUT":
				timeout = num
			case "ATTEMPTS":
				attempts = num
			default:
				return nil, fmt.Errorf("CHECKS line %d: unknown setting %s", n, k)
			}
			continue
		}
		target, content, _ := strings.Cut(line, " ")
		c := Check{Type: "startup", Name: "check-" + strconv.Itoa(len(out)+1), Content: strings.TrimSpace(content),
			Wait: wait, Timeout: timeout, Attempts: attempts}
		if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "//") {
			u, err := url.Parse(target)
			if err != nil {
				return nil, fmt.Errorf("CHECKS line %d: invalid URL %q", n, target)
			}
			c.Scheme = u.Scheme
			c.Path = u.RequestURI()
			if u.Host != "" {
				c.HTTPHeaders = []Header{{Name: "Host", Value: u.Host}}
			}
		} else {
			c.Path = target
		}
		if err := c.validate(); err != nil {
			return nil, fmt.Errorf("CHECKS line %d: %w", n, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read CHECKS: %w", err)
	}
	return out, nil
}

// CronEntries returns the cron entries sorted by ID.
func (a *AppJSON) CronEntries() []CronEntry {
	if a == nil {
		return nil
	}
	out := append([]CronEntry{}, a.Cron...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/berth-paas/berth/internal/appjson"
	"github.com/berth-paas/berth/internal/checks"
	"github.com/berth-paas/berth/internal/store"
)

// Check setting keys (per app, or global when the app is "").
const (
	SettingChecksDisabled = "checks-disabled"
	SettingChecksSkipped  = "checks-skipped"
	SettingWaitToRetire   = "checks-wait-to-retire"
	SettingAttempts       = "checks-attempts"
	SettingTimeout        = "checks-timeout"
	SettingWait           = "checks-wait"
	SettingKeepReleases   = "releases-keep"
	SettingStopTimeout    = "ps-stop-timeout"
	// AllProcesses in a process list means every process type.
	AllProcesses = "_all_"
	// DefaultKeepReleases is how many release images are kept.
	DefaultKeepReleases = 5
)

// CheckPolicy is how an app's deploys are gated.
type CheckPolicy struct {
	Disabled     []string // processes deployed stop-then-start
	Skipped      []string // processes whose checks are skipped
	Settings     checks.Settings
	WaitToRetire time.Duration
	// StopTimeout is how long a stopping container gets between SIGTERM
	// and SIGKILL.
	StopTimeout time.Duration
}

// IsDisabled reports whether checks are disabled for process.
func (c CheckPolicy) IsDisabled(process string) bool { return inList(c.Disabled, process) }

// IsSkipped reports whether checks are skipped for process.
func (c CheckPolicy) IsSkipped(process string) bool { return inList(c.Skipped, process) }

func inList(list []string, p string) bool {
	for _, v := range list {
		if v == p || v == AllProcesses {
			return true
		}
	}
	return false
}

// ProcessList parses a stored comma-separated process list.
func ProcessList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// intSetting reads a numeric setting of app, falling back to the global one.
func (p *Pipeline) intSetting(ctx context.Context, app, key string) (int, error) {
	v, ok, err := p.store.EffectiveSetting(ctx, app, key)
	if err != nil || !ok {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("setting %s for %s is not a number: %q", key, app, v)
	}
	return n, nil
}

// Policy returns app's check policy.
func (p *Pipeline) Policy(ctx context.Context, app string) (CheckPolicy, error) {
	var c CheckPolicy
	v, _, err := p.store.Setting(ctx, app, SettingChecksDisabled)
	if err != nil {
		return c, err
	}
	c.Disabled = ProcessList(v)
	v, _, err = p.store.Setting(ctx, app, SettingChecksSkipped)
	if err != nil {
		return c, err
	}
	c.Skipped = ProcessList(v)
	for key, dst := range map[string]*int{SettingAttempts: &c.Settings.Attempts, SettingTimeout: &c.Settings.Timeout, SettingWait: &c.Settings.Wait} {
		if *dst, err = p.intSetting(ctx, app, key); err != nil {
			return c, err
		}
	}
	secs, err := p.intSetting(ctx, app, SettingWaitToRetire)
	if err != nil {
		return c, err
	}
	c.WaitToRetire = DefaultDrainTimeout
	if secs > 0 {
		c.WaitToRetire = time.Duration(secs) * time.Second
	}
	if secs, err = p.intSetting(ctx, app, SettingStopTimeout); err != nil {
		return c, err
	}
	c.StopTimeout = DefaultStopTimeout
	if secs > 0 {
		c.StopTimeout = time.Duration(secs) * time.Second
	}
	return c, nil
}

// KeepReleases is how many release images of app are kept.
func (p *Pipeline) KeepReleases(ctx context.Context, app string) (int, error) {
	n, err := p.intSetting(ctx, app, SettingKeepReleases)
	if err != nil || n <= 0 {
		return DefaultKeepReleases, err
	}
	return n, nil
}

// AppJSONOf returns the parsed app.json of a release (empty when it had none).
func AppJSONOf(rel store.Release) (*appjson.AppJSON, error) {
	if rel.AppJSON == "" {
		return &appjson.AppJSON{}, nil
	}
	var a appjson.AppJSON
	if err := json.Unmarshal([]byte(rel.AppJSON), &a); err != nil {
		return nil, fmt.Errorf("app.json of release v%d: %w", rel.Version, err)
	}
	return &a, nil
}

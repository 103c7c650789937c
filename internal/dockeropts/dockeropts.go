// Package dockeropts reads `docker run`/`docker build`-style options (from
// docker-options:add and the docker-args-* plugin triggers) into container
// and build settings. Only options that make sense for a PaaS container are
// accepted; anything else is a clear error, never passed to a shell.
package dockeropts

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-units"
	"github.com/kballard/go-shellquote"
)

// Options are the settings read from option words.
type Options struct {
	Labels    map[string]string
	Env       []string
	BuildArgs map[string]*string
	Host      container.HostConfig
	User      string
	WorkDir   string
	// Set records which options were given, for reports.
	Set []string
}

// Phase says where options apply.
type Phase string

// Phases of docker-options:add.
const (
	Build  Phase = "build"
	Deploy Phase = "deploy"
	Run    Phase = "run"
)

// ParsePhase validates a phase name.
func ParsePhase(s string) (Phase, error) {
	switch Phase(s) {
	case Build, Deploy, Run:
		return Phase(s), nil
	}
	return "", fmt.Errorf("unknown phase %q: use build, deploy or run", s)
}

type handler struct {
	value  bool
	phases []Phase
	apply  func(o *Options, v string) error
}

var runPhases = []Phase{Deploy, Run}

var handlers = map[string]handler{
	"--label":              {true, []Phase{Build, Deploy, Run}, setLabel},
	"-l":                   {true, []Phase{Build, Deploy, Run}, setLabel},
	"--build-arg":          {true, []Phase{Build}, setBuildArg},
	"--env":                {true, runPhases, func(o *Options, v string) error { o.Env = append(o.Env, v); return nil }},
	"-e":                   {true, runPhases, func(o *Options, v string) error { o.Env = append(o.Env, v); return nil }},
	"--memory":             {true, runPhases, bytesOpt(func(o *Options, n int64) { o.Host.Memory = n })},
	"-m":                   {true, runPhases, bytesOpt(func(o *Options, n int64) { o.Host.Memory = n })},
	"--memory-reservation": {true, runPhases, bytesOpt(func(o *Options, n int64) { o.Host.MemoryReservation = n })},
	"--memory-swap": {true, runPhases, func(o *Options, v string) error {
		if v == "-1" {
			o.Host.MemorySwap = -1
			return nil
		}
		n, err := units.RAMInBytes(v)
		o.Host.MemorySwap = n
		return err
	}},
	"--shm-size": {true, runPhases, bytesOpt(func(o *Options, n int64) { o.Host.ShmSize = n })},
	"--cpus": {true, runPhases, func(o *Options, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 1024 {
			return fmt.Errorf("invalid --cpus %q", v)
		}
		o.Host.NanoCPUs = int64(f * 1e9)
		return nil
	}},
	"--cpu-shares": {true, runPhases, func(o *Options, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		o.Host.CPUShares = n
		return err
	}},
	"--pids-limit": {true, runPhases, func(o *Options, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		o.Host.PidsLimit = &n
		return err
	}},
	"--ulimit": {true, runPhases, func(o *Options, v string) error {
		u, err := units.ParseUlimit(v)
		if err != nil {
			return err
		}
		o.Host.Ulimits = append(o.Host.Ulimits, &container.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
		return nil
	}},
	"--add-host": {true, runPhases, func(o *Options, v string) error { o.Host.ExtraHosts = append(o.Host.ExtraHosts, v); return nil }},
	"--volume":   {true, runPhases, addBind},
	"-v":         {true, runPhases, addBind},
	"--tmpfs": {true, runPhases, func(o *Options, v string) error {
		if o.Host.Tmpfs == nil {
			o.Host.Tmpfs = map[string]string{}
		}
		path, opts, _ := strings.Cut(v, ":")
		o.Host.Tmpfs[path] = opts
		return nil
	}},
	"--cap-add":   {true, runPhases, func(o *Options, v string) error { o.Host.CapAdd = append(o.Host.CapAdd, v); return nil }},
	"--cap-drop":  {true, runPhases, func(o *Options, v string) error { o.Host.CapDrop = append(o.Host.CapDrop, v); return nil }},
	"--read-only": {false, runPhases, func(o *Options, _ string) error { o.Host.ReadonlyRootfs = true; return nil }},
	"--init":      {false, runPhases, func(o *Options, _ string) error { t := true; o.Host.Init = &t; return nil }},
	"--dns":       {true, runPhases, func(o *Options, v string) error { o.Host.DNS = append(o.Host.DNS, v); return nil }},
	"--user":      {true, runPhases, func(o *Options, v string) error { o.User = v; return nil }},
	"-u":          {true, runPhases, func(o *Options, v string) error { o.User = v; return nil }},
	"--workdir":   {true, runPhases, func(o *Options, v string) error { o.WorkDir = v; return nil }},
	"-w":          {true, runPhases, func(o *Options, v string) error { o.WorkDir = v; return nil }},
	"--log-driver": {true, runPhases, func(o *Options, v string) error {
		o.Host.LogConfig.Type = v
		return nil
	}},
	"--log-opt": {true, runPhases, func(o *Options, v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok {
			return fmt.Errorf("invalid --log-opt %q: use key=value", v)
		}
		if o.Host.LogConfig.Config == nil {
			o.Host.LogConfig.Config = map[string]string{}
		}
		o.Host.LogConfig.Config[k] = val
		return nil
	}},
	"--sysctl": {true, runPhases, func(o *Options, v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok {
			return fmt.Errorf("invalid --sysctl %q: use key=value", v)
		}
		if o.Host.Sysctls == nil {
			o.Host.Sysctls = map[string]string{}
		}
		o.Host.Sysctls[k] = val
		return nil
	}},
}

func setLabel(o *Options, v string) error {
	k, val, _ := strings.Cut(v, "=")
	if k == "" {
		return fmt.Errorf("invalid --label %q", v)
	}
	if strings.HasPrefix(k, "berth.") {
		return fmt.Errorf("labels under berth. are berth's own (%s)", k)
	}
	if o.Labels == nil {
		o.Labels = map[string]string{}
	}
	o.Labels[k] = val
	return nil
}

func setBuildArg(o *Options, v string) error {
	k, val, ok := strings.Cut(v, "=")
	if k == "" {
		return fmt.Errorf("invalid --build-arg %q", v)
	}
	if o.BuildArgs == nil {
		o.BuildArgs = map[string]*string{}
	}
	if ok {
		o.BuildArgs[k] = &val
	} else {
		o.BuildArgs[k] = nil
	}
	return nil
}

func addBind(o *Options, v string) error {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || !strings.HasPrefix(parts[1], "/") {
		return fmt.Errorf("invalid --volume %q: use SOURCE:/container/path[:ro]", v)
	}
	o.Host.Binds = append(o.Host.Binds, v)
	return nil
}

func bytesOpt(set func(*Options, int64)) func(*Options, string) error {
	return func(o *Options, v string) error {
		n, err := units.RAMInBytes(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("invalid size %q", v)
		}
		set(o, n)
		return nil
	}
}

// Split splits option text (one docker-options entry, or a trigger's
// output) into words like a shell would, without evaluating anything.
func Split(text string) ([]string, error) {
	words, err := shellquote.Split(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("cannot read docker options %q: %w", text, err)
	}
	return words, nil
}

// Parse applies option words for phase to o.
func (o *Options) Parse(phase Phase, words []string) error {
	for i := 0; i < len(words); i++ {
		w := words[i]
		name, val, hasVal := strings.Cut(w, "=")
		if !strings.HasPrefix(name, "-") {
			return fmt.Errorf("unexpected docker option %q (options start with -)", w)
		}
		h, ok := handlers[name]
		if !ok {
			return fmt.Errorf("docker option %s is not supported", name)
		}
		if !allowed(h.phases, phase) {
			return fmt.Errorf("docker option %s does not apply to the %s phase", name, phase)
		}
		if h.value && !hasVal {
			if i+1 >= len(words) {
				return fmt.Errorf("docker option %s needs a value", name)
			}
			i++
			val = words[i]
		}
		if !h.value && hasVal {
			return fmt.Errorf("docker option %s takes no value", name)
		}
		if err := h.apply(o, val); err != nil {
			return fmt.Errorf("docker option %s: %w", name, err)
		}
		o.Set = append(o.Set, name)
	}
	return nil
}

// Check validates one option entry for phase without keeping the result.
func Check(phase Phase, text string) error {
	words, err := Split(text)
	if err != nil {
		return err
	}
	if len(words) == 0 {
		return fmt.Errorf("empty docker option")
	}
	var o Options
	return o.Parse(phase, words)
}

func allowed(list []Phase, p Phase) bool {
	for _, x := range list {
		if x == p {
			return true
		}
	}
	return false
}

package validate

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

var (
	pluginRe  = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	triggerRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	gitRefRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/+-]{0,254}$`)
	scpLikeRe = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._/~-]+$`)
)

// PluginName reports whether name is a valid plugin name (the same rule as
// app names: it becomes a directory and a command namespace).
func PluginName(name string) error {
	if !pluginRe.MatchString(name) {
		return fmt.Errorf("invalid plugin name %q: use a lowercase letter followed by up to 62 lowercase letters, digits or dashes", name)
	}
	return nil
}

// TriggerName reports whether name is a valid trigger name (it is looked up
// as a file in each plugin).
func TriggerName(name string) error {
	if !triggerRe.MatchString(name) {
		return fmt.Errorf("invalid trigger name %q: use lowercase letters, digits and dashes", name)
	}
	return nil
}

// GitRef reports whether ref is a plausible git committish (branch, tag or
// commit): no leading dash, no "..", no spaces or shell characters.
func GitRef(ref string) error {
	if !gitRefRe.MatchString(ref) || strings.Contains(ref, "..") || strings.HasSuffix(ref, ".lock") || strings.HasSuffix(ref, "/") {
		return fmt.Errorf("invalid git committish %q: use a branch, tag or commit name", ref)
	}
	return nil
}

// GitURL reports whether u is a git remote berth may clone: an https,
// http, ssh, git or file URL, or scp-like user@host:path.
func GitURL(u string) error {
	if strings.HasPrefix(u, "-") || strings.ContainsAny(u, " \t\n\r\x00") {
		return fmt.Errorf("invalid git URL %q", u)
	}
	if scpLikeRe.MatchString(u) {
		return nil
	}
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("invalid git URL %q: %v", u, err)
	}
	switch p.Scheme {
	case "https", "http", "ssh", "git":
		if p.Host == "" {
			return fmt.Errorf("invalid git URL %q: no host", u)
		}
	case "file":
		if p.Path == "" {
			return fmt.Errorf("invalid git URL %q: no path", u)
		}
	default:
		return fmt.Errorf("invalid git URL %q: use https://, http://, ssh://, git://, file:// or user@host:path", u)
	}
	return nil
}

// Package validate checks every name that comes from outside before it is
// used as a path, a container name, a label, a host name or a shell word.
package validate

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	appRe     = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	processRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	envKeyRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	keyNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
	labelRe   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// AppName reports whether name is a valid app name: a lowercase letter, then
// up to 62 lowercase letters, digits or dashes.
func AppName(name string) error {
	if !appRe.MatchString(name) {
		return fmt.Errorf("invalid app name %q: use a lowercase letter followed by up to 62 lowercase letters, digits or dashes", name)
	}
	return nil
}

// ProcessType reports whether name is a valid process type (a DNS label).
func ProcessType(name string) error {
	if !processRe.MatchString(name) {
		return fmt.Errorf("invalid process type %q: use lowercase letters, digits and dashes (at most 63), not starting or ending with a dash", name)
	}
	return nil
}

// EnvKey reports whether key is a valid environment variable name.
func EnvKey(key string) error {
	if !envKeyRe.MatchString(key) {
		return fmt.Errorf("invalid config key %q: use letters, digits and underscores, not starting with a digit", key)
	}
	return nil
}

// KeyName reports whether name is a valid SSH key name.
func KeyName(name string) error {
	if !keyNameRe.MatchString(name) {
		return fmt.Errorf("invalid key name %q: use up to 64 letters, digits, dots, dashes, underscores or @, starting with a letter or digit", name)
	}
	return nil
}

// Domain normalises and checks a host name: lowercase, no trailing dot, at
// most 253 characters of DNS labels; a leading "*." wildcard label is allowed.
// It returns the normalised name.
func Domain(d string) (string, error) {
	n := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	if n == "" || len(n) > 253 {
		return "", fmt.Errorf("invalid domain %q: it must be 1 to 253 characters long", d)
	}
	labels := strings.Split(n, ".")
	for i, l := range labels {
		if i == 0 && l == "*" && len(labels) > 2 {
			continue
		}
		// Underscores are tolerated in labels (they appear in real host names), but not at the ends.
		if !labelRe.MatchString(strings.ReplaceAll(l, "_", "-")) {
			return "", fmt.Errorf("invalid domain %q: label %q is not a valid DNS label", d, l)
		}
	}
	if allDigitsAndDots(n) {
		return "", fmt.Errorf("invalid domain %q: use a host name, not an IP address", d)
	}
	return n, nil
}

func allDigitsAndDots(s string) bool {
	for _, r := range s {
		if (r < '0' || r > '9') && r != '.' {
			return false
		}
	}
	return true
}

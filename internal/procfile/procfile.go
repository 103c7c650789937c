// Package procfile parses Heroku/Dokku Procfiles ("type: command" lines).
package procfile

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"github.com/berth-paas/berth/internal/validate"
)

// maxSize bounds what is read from a Procfile.
const maxSize = 64 << 10

// Parse reads a Procfile: one "type: command" per line; blank lines and lines
// starting with # are ignored. A malformed line, an invalid or duplicated
// process type, or an empty command is an error naming the line.
func Parse(data []byte) (map[string]string, error) {
	if len(data) > maxSize {
		return nil, fmt.Errorf("Procfile is larger than %d KiB", maxSize>>10)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxSize)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, cmd, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("Procfile line %d: expected \"type: command\", found %q", n, line)
		}
		name, cmd = strings.TrimSpace(name), strings.TrimSpace(cmd)
		if err := validate.ProcessType(name); err != nil {
			return nil, fmt.Errorf("Procfile line %d: %w", n, err)
		}
		if cmd == "" {
			return nil, fmt.Errorf("Procfile line %d: process type %s has no command", n, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("Procfile line %d: process type %s is defined twice", n, name)
		}
		out[name] = cmd
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read Procfile: %w", err)
	}
	return out, nil
}

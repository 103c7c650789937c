// Package plugins holds the trigger bus and the external plugins: every
// stage of berth fires a Dokku-named trigger through the Bus, which runs the
// in-process Go handlers, then the executables of the enabled plugins
// (plugn's rules); and the Manager, which installs, enables and runs those
// plugins and their commands.
package plugins

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/berth-paas/berth/internal/validate"
)

// Handler is an in-process trigger handler. It gets the trigger's arguments,
// the caller's stdin and a writer whose content is returned to the caller;
// a non-nil error stops the chain and fails the caller.
type Handler func(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error

type named struct {
	name string
	fn   Handler
}

// Bus dispatches triggers to their handlers.
type Bus struct {
	mu       sync.RWMutex
	handlers map[string][]named
	plugins  *Manager
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{handlers: map[string][]named{}} }

// Register adds a handler for trigger; owner names it in errors.
func (b *Bus) Register(trigger, owner string, fn Handler) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.handlers[trigger] = append(b.handlers[trigger], named{owner, fn})
}

// SetPlugins makes the bus run the executables of m's enabled plugins after
// the in-process handlers.
func (b *Bus) SetPlugins(m *Manager) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.plugins = m
}

// Plugins returns the plugin manager the bus runs (nil when none).
func (b *Bus) Plugins() *Manager {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.plugins
}

// maxInput bounds the stdin a trigger is given (every handler gets all of it).
const maxInput = 64 << 20

// Fire runs every handler of trigger in order with args and no stdin, and
// returns their concatenated output.
func (b *Bus) Fire(ctx context.Context, trigger string, args ...string) (string, error) {
	return b.FireWithInput(ctx, trigger, nil, args...)
}

// FireWithInput is Fire with stdin for the handlers. stdin is read to its
// end first and each handler (in-process, then each plugin's executable, in
// plugin name order) gets all of it. The stdouts are concatenated; the first
// failure stops the chain.
func (b *Bus) FireWithInput(ctx context.Context, trigger string, stdin io.Reader, args ...string) (string, error) {
	if err := validate.TriggerName(trigger); err != nil {
		return "", err
	}
	b.mu.RLock()
	hs := b.handlers[trigger]
	m := b.plugins
	b.mu.RUnlock()
	var input []byte
	if stdin != nil {
		var err error
		input, err = io.ReadAll(io.LimitReader(stdin, maxInput+1))
		if err != nil {
			return "", fmt.Errorf("trigger %s: read stdin: %w", trigger, err)
		}
		if len(input) > maxInput {
			return "", fmt.Errorf("trigger %s: stdin is larger than %d MiB", trigger, maxInput>>20)
		}
	}
	var out bytes.Buffer
	for _, h := range hs {
		if err := h.fn(ctx, args, bytes.NewReader(input), &out); err != nil {
			return out.String(), fmt.Errorf("trigger %s (%s): %w", trigger, h.name, err)
		}
	}
	if m != nil {
		if err := m.fire(ctx, trigger, input, args, &out); err != nil {
			return out.String(), err
		}
	}
	return out.String(), nil
}

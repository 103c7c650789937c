// Package plugins holds the trigger bus: every stage of berth fires a
// Dokku-named trigger through it, and in-process handlers (and, later,
// external plugin executables) run in order.
package plugins

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
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
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{handlers: map[string][]named{}} }

// Register adds a handler for trigger; owner names it in errors.
func (b *Bus) Register(trigger, owner string, fn Handler) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.handlers[trigger] = append(b.handlers[trigger], named{owner, fn})
}

// Fire runs every handler of trigger in order with args and no stdin, and
// returns their concatenated output.
func (b *Bus) Fire(ctx context.Context, trigger string, args ...string) (string, error) {
	return b.FireWithInput(ctx, trigger, nil, args...)
}

// FireWithInput is Fire with stdin for the handlers.
func (b *Bus) FireWithInput(ctx context.Context, trigger string, stdin io.Reader, args ...string) (string, error) {
	b.mu.RLock()
	hs := b.handlers[trigger]
	b.mu.RUnlock()
	if len(hs) == 0 {
		return "", nil
	}
	if stdin == nil {
		stdin = bytes.NewReader(nil)
	}
	var out bytes.Buffer
	for _, h := range hs {
		if err := h.fn(ctx, args, stdin, &out); err != nil {
			return out.String(), fmt.Errorf("trigger %s (%s): %w", trigger, h.name, err)
		}
	}
	return out.String(), nil
}

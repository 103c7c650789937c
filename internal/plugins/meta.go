package plugins

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"

	"github.com/berth-paas/berth/internal/validate"
)

// Meta is what a plugin's plugin.toml says about it. Both Dokku's layout
// (keys under a [plugin] table) and top-level keys are read.
type Meta struct {
	Name        string
	Version     string
	Description string
	// Commands describe subcommands (subcommands/NAME): usage and help.
	Commands map[string]CommandMeta
}

// CommandMeta documents one plugin command.
type CommandMeta struct {
	Usage string `toml:"usage"`
	Help  string `toml:"help"`
}

type tomlMeta struct {
	Name        string                 `toml:"name"`
	Version     string                 `toml:"version"`
	Description string                 `toml:"description"`
	Commands    map[string]CommandMeta `toml:"commands"`
	Plugin      *struct {
		Name        string                 `toml:"name"`
		Version     string                 `toml:"version"`
		Description string                 `toml:"description"`
		Commands    map[string]CommandMeta `toml:"commands"`
	} `toml:"plugin"`
}

// maxMetaSize bounds plugin.toml.
const maxMetaSize = 64 << 10

// ParseMeta parses the content of a plugin.toml.
func ParseMeta(data []byte) (Meta, error) {
	if len(data) > maxMetaSize {
		return Meta{}, fmt.Errorf("plugin.toml is larger than %d KiB", maxMetaSize>>10)
	}
	var t tomlMeta
	_, err := toml.Decode(string(data), &t)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return Meta{}, fmt.Errorf("plugin.toml line %d: %s", pe.Position.Line, pe.Message)
		}
		return Meta{}, fmt.Errorf("plugin.toml: %w", err)
	}
	m := Meta{Name: t.Name, Version: t.Version, Description: t.Description, Commands: t.Commands}
	if p := t.Plugin; p != nil {
		m.Name = first(p.Name, m.Name)
		m.Version = first(p.Version, m.Version)
		m.Description = first(p.Description, m.Description)
		if len(p.Commands) > 0 {
			if m.Commands == nil {
				m.Commands = map[string]CommandMeta{}
			}
			for k, v := range p.Commands {
				m.Commands[k] = v
			}
		}
	}
	if m.Name != "" {
		if err := validate.PluginName(m.Name); err != nil {
			return Meta{}, fmt.Errorf("plugin.toml: %w", err)
		}
	}
	for name := range m.Commands {
		if err := validCommandWord(name); err != nil {
			return Meta{}, fmt.Errorf("plugin.toml: commands.%s: %w", name, err)
		}
	}
	return m, nil
}

// ReadMeta reads dir/plugin.toml; a missing file is an empty Meta.
func ReadMeta(dir string) (Meta, error) {
	data, err := os.ReadFile(filepath.Join(dir, "plugin.toml"))
	if errors.Is(err, os.ErrNotExist) {
		return Meta{}, nil
	}
	if err != nil {
		return Meta{}, fmt.Errorf("read plugin.toml: %w", err)
	}
	return ParseMeta(data)
}

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

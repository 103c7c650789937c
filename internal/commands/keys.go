package commands

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
	"github.com/berth-paas/berth/internal/validate"
)

func (h *handlers) registerKeys(r *Registry) {
	r.AddNamespace("ssh-keys", "Manage the SSH keys allowed to push and run commands")
	r.Add(&Command{Name: "ssh-keys:add", Usage: "<name> [<file>]", Help: "Add a public key, read from a file on the server or from stdin",
		MinArgs: 1, MaxArgs: 2, Run: h.keysAdd})
	r.Add(&Command{Name: "ssh-keys:list", Usage: "[<name>] [--format json]", Help: "List the allowed keys", MaxArgs: 1, Flags: []Flag{formatFlag}, Run: h.keysList})
	r.Add(&Command{Name: "ssh-keys:remove", Usage: "<name> | --fingerprint <fp>", Help: "Remove a key by name or fingerprint",
		MaxArgs: 1, Flags: []Flag{{Name: "fingerprint", Value: true, Help: "remove the key with this SHA256 fingerprint"}}, Run: h.keysRemove})
}

// ParseKey reads exactly one public key in authorized_keys format.
func ParseKey(data []byte) (ssh.PublicKey, string, error) {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	switch {
	case len(lines) == 0:
		return nil, "", errors.New("no key given: pass a public key file or pipe one on stdin")
	case len(lines) > 1:
		return nil, "", errors.New("more than one key given: add one key per ssh-keys:add")
	}
	key, _, options, _, err := ssh.ParseAuthorizedKey([]byte(lines[0]))
	if err != nil {
		return nil, "", errors.New("the key is not a valid SSH public key")
	}
	if len(options) > 0 {
		return nil, "", errors.New("the key line carries authorized_keys options: give the bare key")
	}
	return key, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))), nil
}

func (h *handlers) keysAdd(ctx context.Context, c *Call) error {
	name := c.Args[0]
	if err := validate.KeyName(name); err != nil {
		return err
	}
	var data []byte
	var err error
	if len(c.Args) == 2 {
		if !c.Caller.Local {
			return errors.New("over SSH, pipe the key on stdin instead of naming a file on the server")
		}
		data, err = os.ReadFile(c.Args[1])
		if err != nil {
			return fmt.Errorf("read key file: %w", err)
		}
	} else {
		data, err = io.ReadAll(io.LimitReader(c.Stdin, 64<<10))
		if err != nil {
			return fmt.Errorf("read key from stdin: %w", err)
		}
	}
	key, line, err := ParseKey(data)
	if err != nil {
		return err
	}
	fp := ssh.FingerprintSHA256(key)
	if err := h.Store.AddKey(ctx, store.SSHKey{Name: name, Fingerprint: fp, PublicKey: line}); err != nil {
		return err
	}
	fmt.Fprintln(c.Stdout, fp)
	return nil
}

type keyReport struct {
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"`
	Type        string    `json:"type"`
	CreatedAt   time.Time `json:"created-at"`
}

func (h *handlers) keysList(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	keys, err := h.Store.Keys(ctx)
	if err != nil {
		return err
	}
	out := []keyReport{}
	for _, k := range keys {
		if len(c.Args) == 1 && k.Name != c.Args[0] {
			continue
		}
		typ, _, _ := strings.Cut(k.PublicKey, " ")
		out = append(out, keyReport{Name: k.Name, Fingerprint: k.Fingerprint, Type: typ, CreatedAt: k.CreatedAt})
	}
	if asJSON {
		return ui.JSON(c.Stdout, out)
	}
	if len(out) == 0 {
		if len(c.Args) == 1 {
			return fmt.Errorf("no key named %s", c.Args[0])
		}
		ui.Warn(c.Stderr, "No public keys found.")
		return nil
	}
	for _, k := range out {
		fmt.Fprintf(c.Stdout, "%s NAME=%q TYPE=%s\n", k.Fingerprint, k.Name, k.Type)
	}
	return nil
}

func (h *handlers) keysRemove(ctx context.Context, c *Call) error {
	target := c.Flag("fingerprint")
	switch {
	case target != "" && len(c.Args) > 0:
		return &UsageError{Msg: "give a name or --fingerprint, not both"}
	case target == "" && len(c.Args) == 0:
		return &UsageError{Msg: "a name is required to remove a key"}
	case target == "":
		target = c.Args[0]
	}
	if err := h.Store.RemoveKey(ctx, target); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no key named or fingerprinted %s", quoteArg(target))
	} else if err != nil {
		return err
	}
	ui.Step(c.Stdout, "Removed key %s", target)
	return nil
}

package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// plugin is the app-package plugin's view of the world: its data
// directory (BERTH_PLUGIN_DATA) and its own files (BERTH_PLUGIN_DIR).
//
//	DATA/apps/APP/vault-password   the app's vault password (0600)
//	DATA/apps/APP/managed-keys     config keys env.yml and vault/ set last time
//	DATA/apps/APP/revs/REV/ansible the ansible/ folder of each deployed revision
type plugin struct {
	data, dir string
	stdout    io.Writer
	stderr    io.Writer
}

func newPlugin() (*plugin, error) {
	data, dir := os.Getenv("BERTH_PLUGIN_DATA"), os.Getenv("BERTH_PLUGIN_DIR")
	if data == "" || dir == "" {
		return nil, errors.New("app-package-helper runs as a berth plugin (BERTH_PLUGIN_DATA and BERTH_PLUGIN_DIR are not set)")
	}
	return &plugin{data: data, dir: dir, stdout: os.Stdout, stderr: os.Stderr}, nil
}

func (p *plugin) appDir(app string) string { return filepath.Join(p.data, "apps", app) }

// keepRevs is how many revisions' ansible/ folders are kept per app.
const keepRevs = 10

var revRe = regexp.MustCompile(`^[0-9a-f]{7,64}$`)

// revDir is where the files of a revision are kept ("no-rev" for deploys
// without a git revision, such as git:from-archive).
func (p *plugin) revDir(app, rev string) (string, error) {
	if rev == "" {
		rev = "no-rev"
	} else if !revRe.MatchString(rev) {
		return "", fmt.Errorf("invalid git revision %q", rev)
	}
	return filepath.Join(p.appDir(app), "revs", rev), nil
}

// postExtract reads env.yml and vault/ from the source tree and sets them
// as config vars (all or nothing), and keeps ansible/ for the deploy
// triggers.
func (p *plugin) postExtract(app, src, rev string) error {
	if err := checkApp(app); err != nil {
		return err
	}
	if !filepath.IsAbs(src) {
		return fmt.Errorf("source directory %q is not absolute", src)
	}
	pairs, sources, err := p.readConfig(app, src)
	if err != nil {
		return err
	}
	if err := p.applyConfig(app, pairs, sources); err != nil {
		return err
	}
	return p.keepAnsible(app, src, rev)
}

// readConfig parses env.yml and decrypts and parses every file in vault/.
// Nothing is written anywhere: a wrong password or a bad line fails the
// whole set.
func (p *plugin) readConfig(app, src string) ([]Pair, map[string]string, error) {
	var pairs []Pair
	sources := map[string]string{}
	add := func(file string, ps []Pair) error {
		for _, pr := range ps {
			if prev, dup := sources[pr.Key]; dup {
				return fmt.Errorf("%s line %d: %s is already set in %s", file, pr.Line, pr.Key, prev)
			}
			sources[pr.Key] = file
			pairs = append(pairs, pr)
		}
		return nil
	}
	if data, err := readRegular(filepath.Join(src, "env.yml")); err == nil {
		ps, err := parseEnvYAML("env.yml", data)
		if err != nil {
			return nil, nil, err
		}
		if err := add("env.yml", ps); err != nil {
			return nil, nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("env.yml: %w", err)
	}
	files, err := vaultFiles(filepath.Join(src, "vault"))
	if err != nil {
		return nil, nil, err
	}
	if len(files) == 0 {
		return pairs, sources, nil
	}
	password, err := p.password(app)
	if err != nil {
		return nil, nil, err
	}
	if password == nil {
		return nil, nil, fmt.Errorf("vault/ holds encrypted files but %s has no vault password: set it with 'berth vault:set-password %s' (the password on stdin)", app, app)
	}
	for _, f := range files {
		name := "vault/" + filepath.Base(f)
		data, err := readRegular(f)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		if !isVault(data) {
			return nil, nil, fmt.Errorf("%s is not encrypted: encrypt it with 'ansible-vault encrypt %s' (secrets must not be committed in clear)", name, name)
		}
		plain, err := decryptVault(data, password)
		if errors.Is(err, errWrongPassword) {
			return nil, nil, fmt.Errorf("%s: wrong vault password for %s: no config was changed (set the right one with 'berth vault:set-password %s')", name, app, app)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		ps, err := parseEnvYAML(name, plain)
		if err != nil {
			return nil, nil, err
		}
		if err := add(name, ps); err != nil {
			return nil, nil, err
		}
	}
	return pairs, sources, nil
}

// vaultFiles lists the files of vault/ (not dotfiles, not subdirectories).
func vaultFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read vault/: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || e.IsDir() {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	sort.Strings(out)
	return out, nil
}

// readRegular reads a regular file (not a symlink: the tree is the
// pusher's) of at most 1 MiB.
func readRegular(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if fi.Size() > 1<<20 {
		return nil, errors.New("larger than 1 MiB")
	}
	return os.ReadFile(path)
}

// applyConfig sets pairs as the app's config vars in one config:set (the
// values go through stdin, never on a command line) and unsets the keys an
// earlier deploy set from these files that are gone now.
func (p *plugin) applyConfig(app string, pairs []Pair, sources map[string]string) error {
	old := p.managedKeys(app)
	var gone []string
	for _, k := range old {
		if _, still := sources[k]; !still {
			gone = append(gone, k)
		}
	}
	if len(pairs) == 0 && len(gone) == 0 {
		return nil
	}
	if len(pairs) > 0 {
		var in bytes.Buffer
		for _, pr := range pairs {
			fmt.Fprintf(&in, "%s=%s\n", pr.Key, base64.StdEncoding.EncodeToString([]byte(pr.Value)))
		}
		if _, err := berth(&in, "config:set", "--no-restart", "--encoded", "--stdin", app); err != nil {
			return fmt.Errorf("set the config of %s: %w", app, err)
		}
		byFile := map[string][]string{}
		var files []string
		for _, pr := range pairs {
			f := sources[pr.Key]
			if _, ok := byFile[f]; !ok {
				files = append(files, f)
			}
			byFile[f] = append(byFile[f], pr.Key)
		}
		for _, f := range files {
			fmt.Fprintf(p.stdout, "App package: set %s from %s\n", strings.Join(byFile[f], ", "), f)
		}
	}
	if len(gone) > 0 {
		args := append([]string{"config:unset", "--no-restart", app}, gone...)
		if _, err := berth(nil, args...); err != nil {
			return fmt.Errorf("unset the config keys removed from env.yml and vault/: %w", err)
		}
		fmt.Fprintf(p.stdout, "App package: unset %s (no longer in env.yml or vault/)\n", strings.Join(gone, ", "))
	}
	keys := make([]string, 0, len(sources))
	for k := range sources {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return writeFileAtomic(filepath.Join(p.appDir(app), "managed-keys"), []byte(strings.Join(keys, "\n")+"\n"), 0o600)
}

func (p *plugin) managedKeys(app string) []string {
	data, err := os.ReadFile(filepath.Join(p.appDir(app), "managed-keys"))
	if err != nil {
		return nil
	}
	var out []string
	for _, k := range strings.Fields(string(data)) {
		if envKeyRe.MatchString(k) {
			out = append(out, k)
		}
	}
	return out
}

// playbooks are the playbooks the plugin runs, by trigger.
var playbooks = []string{"pre-deploy.yml", "post-deploy.yml"}

// keepAnsible copies the tree's ansible/ folder for the deploy triggers of
// this revision. With playbooks and no ansible-playbook, the deploy stops
// here, before anything is built.
func (p *plugin) keepAnsible(app, src, rev string) error {
	dir, err := p.revDir(app, rev)
	if err != nil {
		return err
	}
	os.RemoveAll(dir)
	srcAnsible := filepath.Join(src, "ansible")
	fi, err := os.Lstat(srcAnsible)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil || !fi.IsDir() {
		return errors.New("ansible is not a directory")
	}
	var present []string
	for _, pb := range playbooks {
		if _, err := os.Lstat(filepath.Join(srcAnsible, pb)); err == nil {
			present = append(present, "ansible/"+pb)
		}
	}
	if len(present) == 0 {
		return nil
	}
	// Playbooks run on the server itself, as berth's user: only a push by
	// an admin key may bring them.
	if err := adminPusher(os.Getenv("SSH_NAME")); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(present, " and "), err)
	}
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		return fmt.Errorf("%s needs ansible-playbook, which is not installed on the server: install it there with 'apt-get install ansible'", strings.Join(present, " and "))
	}
	if err := copyDir(srcAnsible, filepath.Join(dir, "ansible")); err != nil {
		return fmt.Errorf("keep ansible/: %w", err)
	}
	now := time.Now()
	os.Chtimes(dir, now, now)
	p.pruneRevs(app)
	return nil
}

// pruneRevs keeps the newest keepRevs revision folders.
func (p *plugin) pruneRevs(app string) {
	root := filepath.Join(p.appDir(app), "revs")
	ents, err := os.ReadDir(root)
	if err != nil || len(ents) <= keepRevs {
		return
	}
	type rev struct {
		name string
		mod  time.Time
	}
	var revs []rev
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			revs = append(revs, rev{e.Name(), fi.ModTime()})
		}
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i].mod.After(revs[j].mod) })
	for _, r := range revs[keepRevs:] {
		os.RemoveAll(filepath.Join(root, r.name))
	}
}

// copyDir copies regular files and directories; symlinks and other special
// files in the pushed tree are refused.
func copyDir(src, dst string) error {
	return filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(target, 0o700)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, 0o600)
		default:
			return fmt.Errorf("ansible/%s is not a regular file or directory", rel)
		}
	})
}

// playbook runs ansible/TRIGGER.yml of the release's revision, if there
// is one, with the app's context as extra vars.
func (p *plugin) playbook(trigger, app, tag, port, ip string) error {
	if err := checkApp(app); err != nil {
		return err
	}
	version, err := releaseOf(app, tag)
	if err != nil {
		return err
	}
	var rel struct {
		GitRev string `json:"git-rev"`
	}
	if err := berthJSON(&rel, "releases:info", app, strconv.Itoa(version), "--format", "json"); err != nil {
		return err
	}
	dir, err := p.revDir(app, rel.GitRev)
	if err != nil {
		return err
	}
	ansibleDir := filepath.Join(dir, "ansible")
	book := trigger + ".yml"
	if _, err := os.Stat(filepath.Join(ansibleDir, book)); err != nil {
		return nil
	}
	bin, err := exec.LookPath("ansible-playbook")
	if err != nil {
		return fmt.Errorf("ansible/%s needs ansible-playbook, which is not installed on the server: install it there with 'apt-get install ansible'", book)
	}
	vars, err := p.context(app, version, tag, rel.GitRev, trigger, port, ip)
	if err != nil {
		return err
	}
	return p.runPlaybook(bin, app, ansibleDir, book, vars)
}

// releaseOf reads N from berth/APP:vN.
func releaseOf(app, tag string) (int, error) {
	prefix := "berth/" + app + ":v"
	if !strings.HasPrefix(tag, prefix) {
		return 0, fmt.Errorf("unexpected image tag %q for %s", tag, app)
	}
	n, err := strconv.Atoi(strings.TrimPrefix(tag, prefix))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("unexpected image tag %q for %s", tag, app)
	}
	return n, nil
}

// context is what a playbook gets as extra vars.
func (p *plugin) context(app string, version int, tag, rev, trigger, port, ip string) (map[string]interface{}, error) {
	var domains struct {
		Hosts []string `json:"hosts"`
	}
	if err := berthJSON(&domains, "domains:report", app, "--format", "json"); err != nil {
		return nil, err
	}
	config := map[string]string{}
	if err := berthJSON(&config, "config:export", "--format", "json", "--merged", app); err != nil {
		return nil, err
	}
	if domains.Hosts == nil {
		domains.Hosts = []string{}
	}
	vars := map[string]interface{}{
		"berth_app":            app,
		"berth_release":        "v" + strconv.Itoa(version),
		"berth_release_number": version,
		"berth_image":          tag,
		"berth_git_rev":        rev,
		"berth_domains":        domains.Hosts,
		"berth_config":         config,
		"berth_trigger":        trigger,
	}
	if trigger == "post-deploy" {
		vars["berth_port"] = port
		vars["berth_ip"] = ip
	}
	return vars, nil
}

// runPlaybook runs ansible-playbook on this host. The extra vars (they hold
// the app's config, secrets included) are written only encrypted, in the
// ansible-vault format, and ansible gets the password from a script reading
// it from the environment: nothing is on disk in clear.
func (p *plugin) runPlaybook(bin, app, ansibleDir, book string, vars map[string]interface{}) error {
	tmp, err := os.MkdirTemp(filepath.Join(p.data), "run-")
	if err != nil {
		return fmt.Errorf("create a run directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	password, err := p.password(app)
	if err != nil {
		return err
	}
	if password == nil {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		password = []byte(hex.EncodeToString(b))
	}
	plain, err := json.Marshal(vars)
	if err != nil {
		return err
	}
	sealed, err := encryptVault(plain, password)
	if err != nil {
		return err
	}
	varsFile := filepath.Join(tmp, "berth-vars.yml")
	if err := os.WriteFile(varsFile, sealed, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(p.stderr, "-----> Running ansible/%s\n", book)
	cmd := exec.Command(bin, "-i", "localhost,", "-c", "local", "-e", "@"+varsFile,
		"--vault-password-file", filepath.Join(p.dir, "bin", "vault-pass"), book)
	cmd.Dir = ansibleDir
	cmd.Env = append(os.Environ(),
		"APP_PACKAGE_VAULT_PASS="+string(password),
		"ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0", "ANSIBLE_RETRY_FILES_ENABLED=0",
		"ANSIBLE_HOME="+filepath.Join(tmp, "home"),
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(tmp, "local"),
		"ANSIBLE_REMOTE_TEMP="+filepath.Join(tmp, "remote"),
		"ANSIBLE_PYTHON_INTERPRETER=auto_silent",
		"ANSIBLE_LOCALHOST_WARNING=False",
		"ANSIBLE_INVENTORY_UNPARSED_WARNING=False",
	)
	iw := &indentWriter{w: p.stderr}
	cmd.Stdout, cmd.Stderr = iw, iw
	err = cmd.Run()
	iw.flush()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("ansible/%s failed (ansible-playbook exited with code %d)", book, ee.ExitCode())
		}
		return fmt.Errorf("run ansible/%s: %w", book, err)
	}
	return nil
}

// indentWriter indents every line by 7 spaces (Dokku's detail lines).
type indentWriter struct {
	w   io.Writer
	buf []byte
}

func (iw *indentWriter) Write(b []byte) (int, error) {
	iw.buf = append(iw.buf, b...)
	for {
		i := bytes.IndexByte(iw.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		if line := bytes.TrimRight(iw.buf[:i], "\r"); len(bytes.TrimSpace(line)) > 0 {
			fmt.Fprintf(iw.w, "       %s\n", line)
		}
		iw.buf = iw.buf[i+1:]
	}
}

func (iw *indentWriter) flush() {
	if len(bytes.TrimSpace(iw.buf)) > 0 {
		fmt.Fprintf(iw.w, "       %s\n", iw.buf)
	}
	iw.buf = nil
}

// password returns the app's vault password, or nil when none is set.
func (p *plugin) password(app string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(p.appDir(app), "vault-password"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the vault password of %s: %w", app, err)
	}
	return data, nil
}

const maxPassword = 4096

func (p *plugin) setPassword(app string) error {
	if err := p.checkExists(app); err != nil {
		return err
	}
	r := bufio.NewReader(io.LimitReader(os.Stdin, maxPassword+2))
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the password from stdin: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	switch {
	case line == "":
		return errors.New("give the password on stdin: echo \"$PASSWORD\" | berth vault:set-password " + app)
	case len(line) > maxPassword:
		return fmt.Errorf("the password is longer than %d bytes", maxPassword)
	case strings.ContainsRune(line, 0):
		return errors.New("the password contains a NUL byte")
	}
	if err := writeFileAtomic(filepath.Join(p.appDir(app), "vault-password"), []byte(line), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(p.stdout, "-----> Vault password of %s set (it decrypts vault/ at the next deploy)\n", app)
	return nil
}

func (p *plugin) unsetPassword(app string) error {
	if err := checkApp(app); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(p.appDir(app), "vault-password"))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s has no vault password", app)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(p.stdout, "-----> Vault password of %s removed\n", app)
	return nil
}

func (p *plugin) report(app string) error {
	if err := p.checkExists(app); err != nil {
		return err
	}
	pw, err := p.password(app)
	if err != nil {
		return err
	}
	set := "not set"
	if pw != nil {
		set = "set"
	}
	keys := strings.Join(p.managedKeys(app), " ")
	if keys == "" {
		keys = "none"
	}
	fmt.Fprintf(p.stdout, "=====> %s app package\n", app)
	fmt.Fprintf(p.stdout, "       Vault password:     %s\n", set)
	fmt.Fprintf(p.stdout, "       Config from files:  %s\n", keys)
	return nil
}

func (p *plugin) checkExists(app string) error {
	if err := checkApp(app); err != nil {
		return err
	}
	if _, err := berth(nil, "apps:exists", app); err != nil {
		return fmt.Errorf("app %s does not exist", app)
	}
	return nil
}

func (p *plugin) forget(app string) error {
	if err := checkApp(app); err != nil {
		return err
	}
	return os.RemoveAll(p.appDir(app))
}

func (p *plugin) rename(from, to string) error {
	if err := checkApp(from); err != nil {
		return err
	}
	if err := checkApp(to); err != nil {
		return err
	}
	err := os.Rename(p.appDir(from), p.appDir(to))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// writeFileAtomic writes data to path (creating its directory, 0700) through
// a temporary file and a rename.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// berth runs a berth command (the `berth` on PATH talks to the server's
// socket) and returns its stdout; its stderr is part of the error.
func berth(stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.Command("berth", args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(stderr.String()), "!"))
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("berth %s: %s", args[0], msg)
	}
	return stdout.Bytes(), nil
}

// adminPusher refuses a push made with a key that is not an admin (the
// server's own CLI, with no key name, is).
func adminPusher(key string) error {
	if key == "" || key == "local" {
		return nil
	}
	var rep struct {
		Role string `json:"role"`
	}
	if err := berthJSON(&rep, "acl:report", key, "--format", "json"); err != nil {
		return fmt.Errorf("check the role of key %s: %w", key, err)
	}
	if rep.Role != "admin" {
		return fmt.Errorf("playbooks run on the server, so only admin keys may push them (key %s is a %s key)", key, rep.Role)
	}
	return nil
}

func berthJSON(v interface{}, args ...string) error {
	out, err := berth(nil, args...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("berth %s: unexpected output: %w", args[0], err)
	}
	return nil
}

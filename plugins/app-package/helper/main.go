// Command app-package-helper does the work of berth's app-package plugin:
// it is called by the plugin's trigger scripts and commands with the
// trigger's arguments, and only uses berth's public plugin API (the
// trigger arguments, the BERTH_PLUGIN_* environment and the `berth`
// command on PATH).
//
//	post-extract APP SOURCE_DIR REV    env.yml + vault/ → config; keep ansible/
//	pre-deploy APP IMAGE_TAG           run ansible/pre-deploy.yml
//	post-deploy APP PORT IP IMAGE_TAG  run ansible/post-deploy.yml
//	post-delete APP IMAGE_TAG          forget the app
//	post-app-rename OLD NEW            follow the rename
//	vault:set-password APP             read the app's vault password on stdin
//	vault:unset-password APP
//	vault:report APP
//
// It builds with any Go release from the standard library only.
package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// usageError is a wrong invocation.
type usageError string

func (e usageError) Error() string { return string(e) }

var appRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func checkApp(app string) error {
	if !appRe.MatchString(app) {
		return fmt.Errorf("invalid app name %q", app)
	}
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fail(usageError("usage: app-package-helper TRIGGER|COMMAND ARGS..."))
	}
	p, err := newPlugin()
	if err != nil {
		fail(err)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "post-extract":
		err = need(args, 2, func() error {
			rev := ""
			if len(args) > 2 {
				rev = args[2]
			}
			return p.postExtract(args[0], args[1], rev)
		})
	case "pre-deploy":
		err = need(args, 2, func() error { return p.playbook("pre-deploy", args[0], args[1], "", "") })
	case "post-deploy":
		err = need(args, 4, func() error { return p.playbook("post-deploy", args[0], args[3], args[1], args[2]) })
	case "post-delete":
		err = need(args, 1, func() error { return p.forget(args[0]) })
	case "post-app-rename":
		err = need(args, 2, func() error { return p.rename(args[0], args[1]) })
	case "vault:set-password":
		err = need(args, 1, func() error { return p.setPassword(args[0]) })
	case "vault:unset-password":
		err = need(args, 1, func() error { return p.unsetPassword(args[0]) })
	case "vault:report":
		err = need(args, 1, func() error { return p.report(args[0]) })
	default:
		err = usageError(fmt.Sprintf("unknown helper command %q", os.Args[1]))
	}
	if err != nil {
		fail(err)
	}
}

func need(args []string, n int, fn func() error) error {
	if len(args) < n {
		return usageError(fmt.Sprintf("expected %d arguments, got %d", n, len(args)))
	}
	return fn()
}

// fail prints a Dokku-style error on stderr and exits 1.
func fail(err error) {
	msg := err.Error()
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	fmt.Fprintf(os.Stderr, " !     %s\n", msg)
	os.Exit(1)
}

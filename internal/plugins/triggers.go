package plugins

// CoreTriggers are the triggers berth itself fires (docs/triggers.md
// describes each).
var CoreTriggers = []string{
	"builder-detect", "check-deploy", "dependencies", "docker-args-build", "docker-args-deploy", "docker-args-run",
	"install", "post-app-rename", "post-build", "post-config-update", "post-create", "post-delete", "post-deploy",
	"post-domains-update", "post-extract", "post-release-builder", "post-stop", "pre-build", "pre-delete", "pre-deploy",
	"pre-release-builder", "pre-start", "receive-app", "uninstall", "user-auth", "user-auth-app",
}

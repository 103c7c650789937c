package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/docker/docker/api/types/image"

	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/store"
	"github.com/berth-paas/berth/internal/ui"
)

// Rollback deploys a previous release again as a new release: same image,
// processes, app.json and env; the app's config is restored to that
// release's. With version 0 it picks the newest succeeded release older
// than the current one.
func (p *Pipeline) Rollback(ctx context.Context, app string, version int, by string, out io.Writer) error {
	a, release, err := p.lockApp(ctx, app, out)
	if err != nil {
		return err
	}
	defer release()
	cur, err := p.currentRelease(ctx, a)
	if err != nil {
		return err
	}
	var target store.Release
	if version == 0 {
		rels, err := p.store.Releases(ctx, app)
		if err != nil {
			return err
		}
		for _, r := range rels {
			if r.Version < cur.Version && r.Status == store.ReleaseSucceeded {
				target = r
				break
			}
		}
		if target.Version == 0 {
			return fmt.Errorf("app %s has no earlier successful release to roll back to", app)
		}
	} else {
		target, err = p.store.Release(ctx, app, version)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("app %s has no release v%d", app, version)
		}
		if err != nil {
			return err
		}
		if target.Version == cur.Version {
			return fmt.Errorf("release v%d is already serving", version)
		}
	}
	if _, err := p.docker.ImageInspect(ctx, ImageTag(app, target.Version)); err != nil {
		if scheduler.IsNotFound(err) {
			return fmt.Errorf("the image of release v%d was removed (releases:set %s keep N keeps more)", target.Version, app)
		}
		return fmt.Errorf("inspect the image of release v%d: %w", target.Version, err)
	}
	ui.Step(out, "Rolling back %s to release v%d", app, target.Version)
	formation, err := p.store.Formation(ctx, app)
	if err != nil {
		return err
	}
	rel, err := p.store.CreateRelease(ctx, store.Release{
		App: app, ImageID: target.ImageID, GitRev: target.GitRev, Env: target.Env, AppEnv: target.AppEnv,
		Processes: target.Processes, Formation: formation, AppJSON: target.AppJSON, Builder: target.Builder,
		Reason: fmt.Sprintf("rollback to v%d", target.Version), CreatedBy: by,
	})
	if err != nil {
		return err
	}
	if err := p.docker.ImageTag(ctx, target.ImageID, ImageTag(app, rel.Version)); err != nil {
		err = fmt.Errorf("tag image: %w", err)
		p.failRelease(ctx, rel, err)
		return err
	}
	source := a.DeploySource
	if source == "" {
		source = "git"
	}
	if err := p.deploy(ctx, a, rel, source, target.GitRev, out); err != nil {
		return err
	}
	// The app's config follows the release it now runs (only once that
	// release serves: a failed rollback changes nothing).
	if target.AppEnv != nil && !maps.Equal(target.AppEnv, mustConfig(ctx, p, app)) {
		if err := p.store.UpdateConfig(context.WithoutCancel(ctx), app, target.AppEnv, nil, true); err != nil {
			return fmt.Errorf("restore the config of release v%d: %w", target.Version, err)
		}
		ui.Detail(out, "Config vars restored to those of release v%d", target.Version)
	}
	return nil
}

func mustConfig(ctx context.Context, p *Pipeline, app string) map[string]string {
	c, _ := p.store.Config(ctx, app)
	return c
}

// pruneImages removes the image tags of releases beyond the app's keep
// count (never the current release's); an image goes once no tag is left.
func (p *Pipeline) pruneImages(ctx context.Context, app string, out io.Writer) {
	keep, err := p.KeepReleases(ctx, app)
	if err != nil {
		p.log.Warn("read keep setting", "app", app, "err", err)
		return
	}
	a, err := p.store.App(ctx, app)
	if err != nil {
		return
	}
	rels, err := p.store.Releases(ctx, app)
	if err != nil {
		return
	}
	imgs, err := p.docker.ImageList(ctx, image.ListOptions{Filters: filtersArgs("reference", ImageRepo(app))})
	if err != nil {
		p.log.Warn("list release images", "app", app, "err", err)
		return
	}
	tagged := map[string]bool{}
	for _, im := range imgs {
		for _, t := range im.RepoTags {
			tagged[t] = true
		}
	}
	var removed []string
	kept := 0
	for _, r := range rels { // newest first
		if r.Version == a.CurrentRelease || (r.Status == store.ReleaseSucceeded && kept < keep) {
			if r.Status == store.ReleaseSucceeded {
				kept++
			}
			continue
		}
		tag := ImageTag(app, r.Version)
		if !tagged[tag] {
			continue
		}
		if _, err := p.docker.ImageRemove(ctx, tag, image.RemoveOptions{}); err != nil {
			if !scheduler.IsNotFound(err) {
				p.log.Warn("remove old release image", "tag", tag, "err", err)
			}
			continue
		}
		removed = append(removed, fmt.Sprintf("v%d", r.Version))
	}
	if len(removed) > 0 && out != nil {
		ui.Detail(out, "Removed the images of old releases %s (keeping %d)", strings.Join(removed, ", "), keep)
	}
}

package pipeline

import (
	"context"
	"fmt"
	"strconv"

	"github.com/berth-paas/berth/internal/dockeropts"
	"github.com/berth-paas/berth/internal/scheduler"
	"github.com/berth-paas/berth/internal/store"
)

// dockerOptions reads the docker options of app for phase: those added with
// docker-options:add, then the output of the docker-args-PHASE trigger
// (called with args, Dokku's order).
func (p *Pipeline) dockerOptions(ctx context.Context, app string, phase dockeropts.Phase, args ...string) (*dockeropts.Options, error) {
	o := &dockeropts.Options{}
	stored, err := p.store.DockerOptions(ctx, app, string(phase))
	if err != nil {
		return nil, err
	}
	for _, entry := range stored {
		words, err := dockeropts.Split(entry)
		if err != nil {
			return nil, err
		}
		if err := o.Parse(phase, words); err != nil {
			return nil, fmt.Errorf("docker-options of %s (%s): %w", app, phase, err)
		}
	}
	trigger := "docker-args-" + string(phase)
	out, err := p.triggers.Fire(ctx, trigger, args...)
	if err != nil {
		return nil, err
	}
	words, err := dockeropts.Split(out)
	if err != nil {
		return nil, fmt.Errorf("%s output: %w", trigger, err)
	}
	if err := o.Parse(phase, words); err != nil {
		return nil, fmt.Errorf("%s output: %w", trigger, err)
	}
	return o, nil
}

// processSpec is spec plus the deploy-phase docker options of the process.
func (p *Pipeline) processSpec(ctx context.Context, rel store.Release, process string, index int) (scheduler.Spec, error) {
	rel, err := p.withMappedPort(ctx, rel)
	if err != nil {
		return scheduler.Spec{}, err
	}
	s, err := p.spec(rel, process, index)
	if err != nil {
		return s, err
	}
	if s.Options, err = p.dockerOptions(ctx, rel.App, dockeropts.Deploy, rel.App, s.Image, process, strconv.Itoa(index)); err != nil {
		return s, err
	}
	limits, err := p.Limits(ctx, rel.App, process)
	if err != nil {
		return s, err
	}
	limits.apply(s.Options)
	return s, nil
}

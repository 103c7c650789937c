#!/usr/bin/env bash
# Installs what berth needs on a Debian/Ubuntu host and makes sure a Docker
# Engine answers: git, the OpenSSH client, curl, debootstrap, and Debian's
# docker.io when no engine is reachable. With --test, also what the test
# suite and benchmarks need. Idempotent; safe to run on every start.
set -euo pipefail

log() { printf -- '-----> %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo " !     run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi

command -v go >/dev/null 2>&1 || { echo " !     Go is required (https://go.dev/doc/install)" >&2; exit 1; }

missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# images:bootstrap makes the buildpack stack with debootstrap.
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${1:-}" = "--test" ]; then
  # What only the test suite and the benchmarks need:
  # a local image registry (Debian's docker-registry) on loopback;
  command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
  # an authoritative DNS server (Knot DNS) on loopback, and dig;
  command -v knotd >/dev/null 2>&1 || [ -x /usr/sbin/knotd ] || missing+=(knot)
  command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
  # nginx (as its own process, on loopback) next to berth, loaded with wrk;
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  # ansible-vault and ansible-playbook for the app-package plugin's tests.
  command -v ansible-playbook >/dev/null 2>&1 || missing+=(ansible)
fi
if ! docker info >/dev/null 2>&1 && ! command -v dockerd >/dev/null 2>&1; then
  missing+=(docker.io)
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "Installing ${missing[*]} from Debian's packages"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts an nginx service on port 80, berth's: keep it off.
  if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
fi

if ! docker info >/dev/null 2>&1; then
  log "Starting the Docker Engine"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl start docker || true
  fi
  if ! docker info >/dev/null 2>&1; then
    $SUDO sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo " !     the Docker Engine did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi

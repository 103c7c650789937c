#!/usr/bin/env bash
# berth quickstart: installs what is missing, builds berth, (re)starts
# `berth server` with its data under ./.berth, adds an SSH key, deploys the
# bundled example app (examples/hello) with a real `git push` over SSH and
# prints its URL. Running it again redeploys; it is idempotent.
#
# Ports: BERTH_HTTP_PORT (default 8080) and BERTH_SSH_PORT (default 2222),
# both on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/.berth
DATA=$STATE/data
HTTP_PORT=${BERTH_HTTP_PORT:-8080}
SSH_PORT=${BERTH_SSH_PORT:-2222}
APP=hello

log() { printf -- '-----> %s\n' "$*"; }

scripts/install-deps.sh

mkdir -p "$STATE/bin" "$DATA"
log "Building berth"
go build -o "$STATE/bin/berth.new" ./cmd/berth
mv -f "$STATE/bin/berth.new" "$STATE/bin/berth"
BERTH=("$STATE/bin/berth" --data-dir "$DATA")

# (Re)start the server so it runs the binary just built; apps keep serving
# across the restart (the server adopts their containers).
if [ -f "$STATE/server.pid" ] && kill -0 "$(cat "$STATE/server.pid")" 2>/dev/null; then
  log "Stopping the running berth server"
  kill -TERM "$(cat "$STATE/server.pid")"
  for _ in $(seq 1 100); do kill -0 "$(cat "$STATE/server.pid")" 2>/dev/null || break; sleep 0.1; done
fi
log "Starting berth server (http 127.0.0.1:$HTTP_PORT, ssh 127.0.0.1:$SSH_PORT, log .berth/server.log)"
setsid nohup "$STATE/bin/berth" server --data-dir "$DATA" \
  --http-addr "127.0.0.1:$HTTP_PORT" --https-addr "" --ssh-addr "127.0.0.1:$SSH_PORT" \
  --domain localhost >>"$STATE/server.log" 2>&1 </dev/null &
echo $! >"$STATE/server.pid"
for _ in $(seq 1 100); do
  "${BERTH[@]}" apps:list >/dev/null 2>&1 && break
  kill -0 "$(cat "$STATE/server.pid")" 2>/dev/null || { tail -n 20 "$STATE/server.log" >&2; exit 1; }
  sleep 0.2
done

KEY=$STATE/id_ed25519
[ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C berth-quickstart -f "$KEY"
if ! "${BERTH[@]}" ssh-keys:list --format json | grep -q '"name": "quickstart"'; then
  log "Adding the quickstart SSH key"
  "${BERTH[@]}" ssh-keys:add quickstart <"$KEY.pub" >/dev/null
fi

log "Preparing the example app ($APP)"
WORK=$STATE/work/$APP
mkdir -p "$WORK"
cp examples/hello/main.go examples/hello/go.mod examples/hello/Dockerfile examples/hello/Procfile "$WORK/"
(cd "$WORK" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o hello .)
cd "$WORK"
[ -d .git ] || git init -q -b main
git add -A
git -c user.name=berth -c user.email=quickstart@berth.invalid commit -q --allow-empty -m "Deploy at $(date -u +%FT%TZ)"

log "Deploying with git push"
export GIT_SSH_COMMAND="ssh -i $KEY -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=$STATE/known_hosts -o LogLevel=ERROR"
git push --force "ssh://git@127.0.0.1:$SSH_PORT/$APP" main

URL="http://$APP.localhost:$HTTP_PORT"
BODY=$(curl -fsS --retry 3 --retry-connrefused -H "Host: $APP.localhost" "http://127.0.0.1:$HTTP_PORT/")
echo
echo "=====> $APP is live at $URL"
echo "$BODY" | sed 's/^/       /'
echo
echo "       Try: $STATE/bin/berth --data-dir $DATA apps:list"
echo "            ssh -i $KEY -p $SSH_PORT git@127.0.0.1 ps:report $APP"

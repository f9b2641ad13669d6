#!/bin/sh
# Enroll once (the token comes from `msspctl gateway add`), then run. Enrollment state persists in
# the volume, so a restarted container keeps its identity and its last applied state.
set -eu
STATE=/var/lib/mssp-agent
if [ ! -f "$STATE/identity.json" ]; then
  : "${MSSP_ENROLL_TOKEN:?set MSSP_ENROLL_TOKEN to a token from msspctl gateway add}"
  mssp-agent enroll --controller "${MSSP_CONTROLLER:-controller:7443}" --token "$MSSP_ENROLL_TOKEN" \
    --state-dir "$STATE" --tls-server-name controller
fi
exec mssp-agent run --state-dir "$STATE" --backend "${MSSP_AGENT_BACKEND:-recording}"

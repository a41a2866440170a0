#!/usr/bin/env bash
# Start sshd when the container is a node of a multi-node job (ENGINE_SSHD=1), then run the command.
set -euo pipefail
if [[ "${ENGINE_SSHD:-0}" == "1" ]]; then
    /usr/sbin/sshd
fi
exec "$@"

#!/usr/bin/env bash
# Create the secrets docker-compose.yml reads (once; existing ones are kept):
#   docker/secrets/ray_auth_token  Ray token authentication (RAY_AUTH_MODE=token) for every Ray node and driver
#   docker/secrets/pg_password     the PostgreSQL password of the MLflow backend store
# They are random, mode 600 and git-ignored. To use the same Ray token on other hosts, copy the file there.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p secrets
chmod 700 secrets
umask 077
for name in ray_auth_token pg_password; do
  if [ ! -s "secrets/$name" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "secrets/$name"
    echo "created docker/secrets/$name"
  fi
done

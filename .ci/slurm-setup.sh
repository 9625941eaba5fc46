#!/usr/bin/env bash
# Install Debian's Slurm + munge + PMIx and start the single-node test cluster (slurm/local/start.sh).
# Idempotent: packages already present are not fetched again, running daemons are left running.
# Run as root on Debian 12 (bookworm). Afterwards `pytest -m slurm` finds an idle node.
set -euo pipefail
cd "$(dirname "$0")/.."

# slurm-wlm: slurmctld + slurmd + client; libpmix-dev: the pmix plugin dlopens the unversioned libpmix.so.
packages=(slurm-wlm munge libpmix2 libpmix-dev)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "slurm-setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

exec slurm/local/start.sh

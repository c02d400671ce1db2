#!/usr/bin/env bash
# The packages of the local Slurm that tests/test_slurm.py starts (`python -m pytest -m slurm`):
# Debian's slurm-wlm 22.05 (slurmctld, slurmd, the client commands), slurmdbd and MariaDB for
# accounting (the executor plugin polls job states with sacct), and munge. Needs root; installs
# only: no daemon is started here, and the test stops every daemon it starts.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm slurmdbd munge mariadb-server > /dev/null
for daemon in munged slurmctld slurmd slurmdbd; do  # a package's post-install may start a service
  pkill -x "$daemon" 2> /dev/null || true
done
pkill -x mariadbd 2> /dev/null || true
echo "Slurm $(dpkg-query -W -f='${Version}' slurm-wlm), munge and MariaDB installed"

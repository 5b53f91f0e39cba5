#!/usr/bin/env bash
# `make test-slurm`: the workflow on a real single-node SLURM (tests/test_slurm_cluster.py).
# 1. a cluster with accounting (slurmdbd + MariaDB), as real clusters have it: the smoke
#    scale of the default config and of one paper experiment, checked job by job against
#    sacct and byte by byte against a local run; the wall-time path;
# 2. a cluster without accounting: the README's squeue route finishes (bounded).
# Every daemon is stopped by its recorded PID, also when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${SLURM_CI_DIR:-$(mktemp -d /tmp/soften-slurm.XXXXXX)}
PYTEST=(.venv/bin/python -m pytest -p no:cacheprovider tests/test_slurm_cluster.py)
trap '.ci/slurm-cluster.sh stop "$DIR/acct" >/dev/null 2>&1 || true; .ci/slurm-cluster.sh stop "$DIR/noacct" >/dev/null 2>&1 || true' EXIT
export PATH="$PWD/.venv/bin:$PATH"

.ci/slurm-cluster.sh start "$DIR/acct"
SOFTEN_SLURM_DIR=$DIR/acct "${PYTEST[@]}" -k "not accounting" -s
.ci/slurm-cluster.sh stop "$DIR/acct"

SLURM_CI_ACCOUNTING=0 SLURM_CI_MIN_JOB_AGE=300 .ci/slurm-cluster.sh start "$DIR/noacct"
SOFTEN_SLURM_DIR=$DIR/noacct SOFTEN_SLURM_ACCOUNTING=0 "${PYTEST[@]}" -k accounting -s
.ci/slurm-cluster.sh stop "$DIR/noacct"
echo "test-slurm: passed (cluster logs in $DIR)"

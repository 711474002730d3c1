#!/usr/bin/env bash
# Train one recipe on several machines with `vsgan train --strategy multiworker`
# (tf.distribute.MultiWorkerMirroredStrategy; one process per node, all GPUs of a node used).
#
# Every node runs the SAME command with the same cluster in TF_CONFIG and its own task index.
# Worker 0 (the chief) writes the run folder OUT; worker i keeps its own copy of the run state in
# OUT.worker<i> (so every worker can resume). The recipe's batch_size is the GLOBAL batch: it is
# split across all replicas, so scale it (and usually the learning rate) with the node count.
# Re-running the same command on all nodes after a crash resumes from the last finished epoch.
#
# By hand, on two nodes (node0, node1; port 12345 open between them):
#   node0$ TF_CONFIG='{"cluster": {"worker": ["node0:12345", "node1:12345"]},
#                      "task": {"type": "worker", "index": 0}}' \
#          vsgan train --preset isl-nuclei --data /data --out runs/isl --strategy multiworker
#   node1$ (the same with "index": 1)
#
# One machine, several GPUs:   vsgan train --preset isl-nuclei --out runs/isl --strategy mirrored
#
# Under SLURM (one task per node), submit this script:  sbatch examples/multi_node_train.sh
#SBATCH --job-name=vsgan-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --time=24:00:00
set -euo pipefail
PORT=${PORT:-12345}
PRESET=${PRESET:-isl-nuclei}
DATA=${VSGAN_DATA:-/data}
OUT=${OUT:-runs/${PRESET}-multinode}

# srun starts one copy of the inner command per node; each builds TF_CONFIG from SLURM's
# node list and its own SLURM_PROCID (the worker index).
srun bash -c '
  workers=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed "s/$/:'"$PORT"'/" \
            | python -c "import json,sys; print(json.dumps([l.strip() for l in sys.stdin]))")
  export TF_CONFIG="{\"cluster\": {\"worker\": $workers},
                     \"task\": {\"type\": \"worker\", \"index\": $SLURM_PROCID}}"
  exec vsgan train --preset '"$PRESET"' --data '"$DATA"' --out '"$OUT"' \
       --strategy multiworker --quiet
'

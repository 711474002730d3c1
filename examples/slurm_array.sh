#!/usr/bin/env bash
# Stain a whole HCS plate on a SLURM cluster: one array task per shard, one shared output plate.
#
#   sbatch --array=0-15 examples/slurm_array.sh isl-nuclei /data/plate.zarr /data/plate_vs.zarr
#
# Every task stains every 16th field (`--shard i/n`); the first to start creates the output
# plate's layout (under a lock), the others find it. A task that is preempted or killed can be
# resubmitted as it is (`sbatch --array=7 ...`): it skips its complete positions and never
# leaves a half-written one. The plate is complete when every task printed "plate complete" or
# its last line lists 0 positions still to stain.
#SBATCH --job-name=vsgan-plate
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=vsgan-plate-%A_%a.log
##SBATCH --gres=gpu:1            # uncomment on GPU partitions
set -euo pipefail

MODEL="${1:?usage: sbatch --array=0-N $0 MODEL PLATE.zarr OUTPUT.zarr [predict options]}"
PLATE="${2:?input HCS plate (.zarr)}"
OUTPUT="${3:?output plate (.zarr)}"
shift 3

INDEX="${SLURM_ARRAY_TASK_ID:-0}"
COUNT="${SLURM_ARRAY_TASK_COUNT:-1}"
# SLURM_ARRAY_TASK_COUNT counts the tasks of --array=0-N; with a step or a list, set COUNT yourself.

exec vsgan predict "$MODEL" "$PLATE" -o "$OUTPUT" --format zarr --shard "$INDEX/$COUNT" --quiet "$@"

#!/bin/bash
# Slurm batch script: reduce one run with one MPI rank per core (or per GPU).
#   sbatch jobs/slurm_reduce.sh jobs/example_lcls_mfx.yaml
# Rank 0 writes the output while every rank (rank 0 included) detects and classifies.
#SBATCH --job-name=mpireduce
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=32
#SBATCH --cpus-per-task=1
#SBATCH --time=01:00:00
#SBATCH --output=mpireduce-%j.log
# On GPU partitions: one rank per GPU, e.g.
##SBATCH --gpus-per-node=4 --ntasks-per-node=4 --cpus-per-task=8
set -euo pipefail
JOB=${1:?usage: sbatch jobs/slurm_reduce.sh JOB.yaml}

# Site set-up: load the site's MPI and activate an environment where mpireduce is installed
# (`pip install -e .` in a venv; build mpi4py against the site MPI: `pip install --no-binary mpi4py mpi4py`).
# module load openmpi python
# source /path/to/venv/bin/activate

export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
# srun starts the ranks; mpireduce splits events in chunks across all of them.
srun --cpu-bind=cores mpireduce run "$JOB" --overwrite
mpireduce inspect "$(python -c "import sys,yaml;print(yaml.safe_load(open(sys.argv[1]))['output']['path'])" "$JOB")"

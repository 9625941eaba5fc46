# Source on a Frontier login node before `snakemake --profile slurm/profiles/frontier ...`.
# Jobs inherit this environment (the Slurm executor submits with --export=ALL). It sets up the hybrid MPI
# model of OLCF's "Containers on Frontier": the container's MPICH is swapped at run time for the host's
# Cray MPICH (ABI compatible), with GPU-aware MPI through the GTL library.
# Versions follow OLCF's recommended pairs (CPE 25.09 + ROCm 6.4.2, 2026); check the user guide for current ones.
module load cpe/25.09 rocm/6.4.2 cray-mpich-abi/9.0.1 olcf-container-tools apptainer-enable-mpi apptainer-enable-gpu
export MPICH_GPU_SUPPORT_ENABLED=1
export APPTAINER_BINDPATH="/usr/share/libdrm,/var/spool/slurmd,/opt/cray,${PWD}"
export APPTAINERENV_LD_LIBRARY_PATH="$CRAY_MPICH_ROOTDIR/gtl/lib:/opt/rocm/lib:/opt/rocm/lib64:$CRAY_LD_LIBRARY_PATH:$LD_LIBRARY_PATH:/opt/cray/pe/lib64"
export APPTAINERENV_LD_PRELOAD="$CRAY_MPICH_ROOTDIR/gtl/lib/libmpi_gtl_hsa.so.0"
# The data root of every job (staged on the login node by the study's stage rule).
export HPCQ_DATA="${HPCQ_DATA:-$PWD/data}"

"""The prepared GPU check (``python -m bench.gpu_check``): a plan of steps that exercise every CUDA
path of pgti in one call of a few minutes, the probes those steps run, and the report."""

# Image builds: one target per row of docker/cuda-matrix.json (the table: CUDA_MATRIX, PYTHON_VERSION,
# SAGE_REPO, SAGE_COMMIT), always read together with this file:
#
#   docker buildx bake -f docker/docker-bake.hcl -f docker/cuda-matrix.json cu126   # make build CUDA=12.6
#   docker buildx bake -f docker/docker-bake.hcl -f docker/cuda-matrix.json all     # make build-all
#
# Keep expressions here to plain references (row.x, VAR): tests/docker/test_bake.py resolves every
# target with a small evaluator and checks it against the table.

variable "REGISTRY" {
  description = "image repository the tags are pushed to"
  default     = "docker.io/comfypod/comfypod"
}

variable "VERSION" {
  description = "ComfyPod release for the version-pinned tag (setup.cfg's version)"
  default     = "0.1.0"
}

variable "FLAVOR" {
  description = "first part of the tag: base-py3.13-cu128"
  default     = "base"
}

variable "MAX_JOBS" {
  description = "parallel nvcc jobs for SageAttention (empty: derived from free memory)"
  default     = ""
}

group "default" {
  targets = ["cu130"]
}

group "all" {
  targets = ["image"]
}

target "image" {
  name       = row.tag
  matrix     = { row = CUDA_MATRIX }
  context    = "."
  dockerfile = "docker/Dockerfile"
  target     = "runtime"
  platforms  = ["linux/amd64"]
  args = {
    CUDA_VERSION   = row.cuda
    BASE_DEVEL     = row.base_devel
    BASE_RUNTIME   = row.base_runtime
    PYTHON_VERSION = PYTHON_VERSION
    TORCH_VERSION  = row.torch
    TORCH_INDEX    = row.torch_index
    SAGE_ARCH      = row.sage_arch
    SAGE_REPO      = SAGE_REPO
    SAGE_COMMIT    = SAGE_COMMIT
    MAX_JOBS       = MAX_JOBS
  }
  tags = [
    "${REGISTRY}:${FLAVOR}-py${PYTHON_VERSION}-${row.tag}",
    "${REGISTRY}:${VERSION}-${FLAVOR}-py${PYTHON_VERSION}-${row.tag}",
  ]
  labels = {
    "org.opencontainers.image.title"   = "ComfyPod"
    "org.opencontainers.image.version" = "${VERSION}"
    "io.comfypod.cuda"                 = "${row.cuda}"
    "io.comfypod.torch"                = "${row.torch}"
    "io.comfypod.sage-arch"            = "${row.sage_arch}"
    "io.comfypod.min-driver"           = "${row.min_driver}"
  }
  # Build caches are set by the caller: --set '*.cache-from=type=gha,scope=cu128' (CI).
}

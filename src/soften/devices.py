"""Which device a job runs on, resolved inside the job (never where the DAG is built).

``auto`` means CUDA when the job's host has it, else CPU; ``cpu`` and ``cuda:K``
are taken as given (``cuda`` or ``cuda:K`` on a host without that GPU is an error).
There is no silent CPU fallback: ``auto`` on a host with an NVIDIA GPU that the
installed PyTorch cannot use (a CPU-only build, a driver older than the build's
CUDA) stops with one line saying why, as does any CUDA device whose architecture
the build ships no kernels for; the GPU a job uses is made its current device and
logged (name, index, compute capability, driver). On a host with several visible GPUs a ``cuda``/``auto`` job
claims a GPU slot no other soften job on the host holds: each GPU has
``gpu_slots_per_device`` slots (config key, default 1), each an advisory lock
file held for the life of the process, and slots are handed out GPU by GPU
before any GPU gets a second job. So ``snakemake all --resources gpu=N`` with
N = GPUs x slots keeps every GPU busy with that many jobs. Where a scheduler
already restricts the job (SLURM sets CUDA_VISIBLE_DEVICES to one GPU), that
GPU is used.

- A process holds at most one GPU: every later ``resolve_device`` call returns it.
- Locks are named by the physical device (its UUID), so jobs that see the GPUs
  through different ``CUDA_VISIBLE_DEVICES`` sets never contend by mistake.
- Lock files live in ``$SOFTEN_GPU_LOCK_DIR``, default ``<tmp>/soften-gpu-locks``,
  created sticky and world-writable like /tmp (mode 1777), and each lock file is
  readable and writable by every user, so jobs of several users on one host share
  one set of locks. A folder given in ``SOFTEN_GPU_LOCK_DIR`` must be writable by
  every user whose jobs should coordinate.
"""

from __future__ import annotations

import fcntl
import logging
import os
import platform
import re
import tempfile
from pathlib import Path

from soften.errors import SoftenError

log = logging.getLogger("soften.devices")

#: Spec keys that say where a job runs (or how it reports), not what it computes: a
#: run moved to another device, thread count or GPU sharing, or with tracking switched
#: on, resumes from its last.pt, and Snakemake passes them outside a rule's params so
#: that moving jobs re-runs nothing.
PLACEMENT_KEYS = ("device", "threads", "gpu_slots", "tracking")

LOCK_DIR_ENV = "SOFTEN_GPU_LOCK_DIR"

_held: list[int] = []        # lock file descriptors kept open while the process lives
_claimed: str | None = None  # the GPU this process resolved cuda/auto to


def cpu_name() -> str:
    """This host's CPU model (/proc/cpuinfo), without importing torch: a CPU's benchmark
    file is named after it (``bench`` writes it, ``plan`` and ``cluster`` look it up)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def device_slug(name: str) -> str:
    """A device name as a file name: ``benchmarks/results/<slug>.json``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


#: NVIDIA's control node on Linux; WSL2 has no /dev/nvidia* but /dev/dxg (any GPU through
#: DirectX) and, when the Windows NVIDIA driver is installed, its libcuda under /usr/lib/wsl/lib.
NVIDIA_NODE = "/dev/nvidiactl"
WSL_NODE, WSL_LIBCUDA = "/dev/dxg", "/usr/lib/wsl/lib"


def nvidia_present() -> bool:
    """Whether this host shows an NVIDIA GPU to user space (without importing torch): the
    driver's control node, or WSL2's GPU node with NVIDIA's libcuda beside it."""
    if Path(NVIDIA_NODE).exists():
        return True
    return Path(WSL_NODE).exists() and any(Path(WSL_LIBCUDA).glob("libcuda.so*"))


def host_has_cuda() -> bool:
    """Whether this host can run CUDA. Without an NVIDIA GPU (see :func:`nvidia_present`)
    there is none to find, and torch is not imported (seconds per Snakemake start)."""
    if not nvidia_present():
        return False
    import torch

    return torch.cuda.is_available()


def driver_version() -> str | None:
    """The NVIDIA kernel driver's version (e.g. ``580.65.06``), or None where it cannot be read."""
    try:
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9][0-9.]+)", Path("/proc/driver/nvidia/version").read_text())
        if found:
            return found.group(1)
    except OSError:
        pass
    try:
        import torch

        api = int(torch._C._cuda_getDriverVersion())  # the CUDA API level the driver supports, e.g. 12040
        return f"supports CUDA {api // 1000}.{api % 1000 // 10}" if api else None
    except Exception:  # noqa: BLE001 - a build without this private call: the version stays unknown
        return None


def _arch_runs(capability: tuple[int, int], arch: str) -> bool:
    """Whether code built for ``arch`` (``sm_80``, ``compute_90``, ``sm_90a``) runs on a GPU of
    ``capability``: a cubin on the same major version at an equal or lower minor, PTX on any
    GPU at least as new (the driver compiles it)."""
    found = re.fullmatch(r"(sm|compute)_(\d+)([af]?)", arch)
    if not found:
        return False
    number = int(found.group(2))
    built = (number // 10, number % 10)
    if found.group(1) == "compute":
        return built <= capability
    if found.group(3) == "a":  # architecture-specific features: that exact GPU only
        return built == capability
    return built[0] == capability[0] and built[1] <= capability[1]


def unusable_gpu(index: int) -> str | None:
    """Why the installed PyTorch cannot run kernels on GPU ``index`` (None: it can): its
    architecture is older than every one the wheel was built for (no kernel image)."""
    import torch

    capability = tuple(torch.cuda.get_device_capability(index))
    archs = list(torch.cuda.get_arch_list())
    if not archs or any(_arch_runs(capability, a) for a in archs):
        return None
    return (f"GPU {index} ({torch.cuda.get_device_name(index)}) is sm_{capability[0]}{capability[1]}, but PyTorch "
            f"{torch.__version__} (CUDA {torch.version.cuda}) ships kernels for {' '.join(archs)} only")


def why_no_cuda() -> str:
    """Why PyTorch sees no usable CUDA on a host that has an NVIDIA GPU, in one phrase."""
    import torch

    if not torch.version.cuda:
        return f"PyTorch {torch.__version__} is a CPU-only build"
    driver = driver_version()
    return (f"PyTorch {torch.__version__} is built for CUDA {torch.version.cuda} and the NVIDIA driver "
            f"({driver or 'version unknown'}) does not run it: the driver is older than that CUDA needs, or not loaded")


def describe_gpu(index: int) -> str:
    """One line naming GPU ``index``: name, index, compute capability, memory, driver."""
    import torch

    try:
        memory = getattr(torch.cuda.get_device_properties(index), "total_memory", None)
    except Exception:  # noqa: BLE001 - a description without the memory size rather than a failed job
        memory = None
    major, minor = torch.cuda.get_device_capability(index)
    return (f"{torch.cuda.get_device_name(index)} (cuda:{index}, sm_{major}{minor}"
            + (f", {memory / 2**30:.0f} GiB" if memory else "")
            + f", driver {driver_version() or 'unknown'}, PyTorch {torch.__version__} CUDA {torch.version.cuda})")


def lock_dir() -> Path:
    """The folder of the GPU lock files, created (mode 1777) when missing."""
    folder = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "soften-gpu-locks")
    if not folder.is_dir():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o1777)  # mkdir's mode is cut by the umask
        except OSError as err:
            raise SoftenError(f"cannot create the GPU lock folder {folder} ({err.strerror}); set {LOCK_DIR_ENV} to a "
                              "folder every user running soften jobs can write (mode 1777)") from None
    return folder


def device_keys(count: int) -> list[str]:
    """A name for each visible GPU that is the same in every process on the host:
    its UUID where PyTorch reports one, else the CUDA_VISIBLE_DEVICES entry, else the index."""
    import torch

    visible = [e.strip() for e in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if e.strip()]
    keys = []
    for index in range(count):
        key = None
        try:
            uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
            key = f"uuid-{uuid}" if uuid else None
        except Exception:  # noqa: BLE001 - no UUID from this driver/build: fall back to the index
            pass
        if key is None:
            key = f"gpu-{visible[index]}" if index < len(visible) else f"gpu-{index}"
        keys.append(re.sub(r"[^A-Za-z0-9_.-]", "_", key))
    return keys


def _open_lock(path: Path) -> int:
    """A descriptor on the lock file at ``path``, creating it usable by every user."""
    while True:
        try:
            # Read-only suffices for flock, and opens another user's file whatever its mode; no O_CREAT,
            # which Linux refuses on another user's file in a sticky folder (fs.protected_regular).
            return os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue  # another job created it just now
        except OSError as err:
            raise SoftenError(f"cannot create the GPU lock file {path} ({err.strerror}); set {LOCK_DIR_ENV} to a "
                              "folder every user running soften jobs can write (mode 1777)") from None
        os.fchmod(fd, 0o666)  # the umask would leave 0644
        return fd


def claim_slot(keys: list[str], slots: int, folder: Path) -> int | None:
    """Lock the first free (GPU, slot), slot-major so GPUs fill evenly; the GPU's index, or None if all are held."""
    for slot in range(slots):
        for index, key in enumerate(keys):
            fd = _open_lock(folder / f"soften-{key}-slot{slot}.lock")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            _held.append(fd)
            return index
    return None


def resolve_device(name: str, slots: int = 1) -> str:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:K`` -> a concrete torch device string.

    ``slots``: how many soften jobs may share one GPU (config ``gpu_slots_per_device``).
    """
    global _claimed
    if name == "cpu":
        log.info("device: cpu (as configured)")
        return name
    if _claimed is not None and not name.startswith("cuda:"):
        return _claimed
    import torch

    available = torch.cuda.is_available()
    if name == "auto" and not available:
        if nvidia_present():
            # Training a GPU-sized run on the CPU would take days and look like a slow GPU: stop instead.
            raise SoftenError(f"device: auto found an NVIDIA GPU but cannot use it: {why_no_cuda()}; install a PyTorch "
                              "build for this driver (README, 'GPU requirements') or set device: cpu")
        log.info("device: cpu (no NVIDIA GPU on this host)")
        return "cpu"
    if not available:
        raise SoftenError(f"device {name!r} was asked for, but this host has no usable CUDA GPU; set device: auto "
                          "(or cpu) in the config, or run the job on a GPU node")
    count = torch.cuda.device_count()
    if name.startswith("cuda:"):
        if int(name.split(":")[1]) >= count:
            raise SoftenError(f"device {name!r} was asked for, but this host shows {count} GPU(s) (cuda:0 to "
                              f"cuda:{count - 1}); set device: cuda to let soften pick a free one")
        return _use(int(name.split(":")[1]), name)
    if count <= 1:
        _claimed = _use(0, "cuda")
        return _claimed
    slots = max(1, int(slots))
    index = claim_slot(device_keys(count), slots, lock_dir())
    if index is None:
        index = os.getpid() % count
        log.warning("all %d GPU slots (%d GPUs x %d) are held by other soften jobs; sharing cuda:%d",
                    count * slots, count, slots, index)
    _claimed = _use(index, f"cuda:{index}")
    return _claimed


def _use(index: int, device: str) -> str:
    """Check that PyTorch can run on GPU ``index``, make it the process's current device (so
    that a bare ``cuda``, cuDNN handles and CUDA RNG calls land on it, not on GPU 0), and log it."""
    import torch

    problem = unusable_gpu(index)
    if problem is not None:
        raise SoftenError(f"{problem} (no kernel image); run on a newer GPU, or install a PyTorch build that "
                          "supports it (README, 'GPU requirements')")
    torch.cuda.set_device(index)
    log.info("device: %s", describe_gpu(index))
    return device

"""A single-node SLURM cluster on localhost for the tests (Debian's slurm-wlm and munge).

`start` writes the cluster's slurm.conf to SLURM's default place, /etc/slurm/slurm.conf
(refusing to run on a machine that already has one), starts munged (if it is not running),
slurmctld and slurmd, and waits until the node is idle; `stop` removes it again. The
default place is needed because the executor's job-step plugin (0.6.1) drops SLURM_CONF
from the environment of the `srun` it runs inside each job. Accounting is
off (no slurmdbd), so the executor plugin polls squeue; finished jobs stay visible for
MinJobAge seconds, well above 3x the plugin's first status check. The node declares more
CPUs than the machine has (config_overrides), so that jobs asking for 4 threads run on a
2-core test machine, and a DefMemPerCPU so that jobs share it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd")
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by supportset's tests (tests/slurm_cluster.py); removed when they stop"


def available() -> str:
    """Why a cluster cannot start here ("" when it can)."""
    missing = [name for name in (*DAEMONS, "munged", "sbatch", "squeue") if not shutil.which(name)]
    if missing:
        packages = "slurmctld slurmd slurm-client munge"
        return f"not installed: {', '.join(missing)} (apt-get install {packages})"
    if os.geteuid() != 0:
        return "starting slurmd needs root"
    if SLURM_CONF.exists() and not SLURM_CONF.read_text().startswith(MARK):
        return f"{SLURM_CONF} exists: this machine has its own SLURM, which the test leaves alone"
    return ""


def slurm_conf(folder: Path, host: str) -> str:
    return "\n".join(
        [
            MARK,
            "ClusterName=supportset-test",
            f"SlurmctldHost={host}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            f"StateSaveLocation={folder}/state",
            f"SlurmdSpoolDir={folder}/spool",
            f"SlurmctldPidFile={folder}/slurmctld.pid",
            f"SlurmdPidFile={folder}/slurmd.pid",
            f"SlurmctldLogFile={folder}/slurmctld.log",
            f"SlurmdLogFile={folder}/slurmd.log",
            "SlurmctldPort=16817",
            "SlurmdPort=16818",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "SlurmdParameters=config_overrides",
            "ReturnToService=2",
            "MinJobAge=300",
            "DefMemPerCPU=1000",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            f"NodeName={host} CPUs=8 RealMemory=16000 State=UNKNOWN",
            f"PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def start(folder: Path, timeout: float = 60.0) -> dict[str, str]:
    """Start the cluster; returns the environment (SLURM_CONF) its clients need."""
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0]
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(slurm_conf(folder, host))
    env = {**os.environ, "SLURM_CONF": str(SLURM_CONF)}
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
    for daemon in DAEMONS:
        subprocess.run([daemon], env=env, check=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["sinfo", "--noheader", "--format=%t"], env=env, capture_output=True, text=True
        ).stdout.strip()
        if state == "idle":
            return {"SLURM_CONF": env["SLURM_CONF"]}
        time.sleep(1)
    logs = "".join(
        (folder / f"{d}.log").read_text()[-2000:] for d in DAEMONS if (folder / f"{d}.log").exists()
    )
    stop(folder)
    raise RuntimeError(f"the test cluster did not come up in {timeout:.0f} s:\n{logs}")


def stop(folder: Path) -> None:
    """Cancel every job, stop both daemons and remove the cluster's slurm.conf."""
    env = {**os.environ, "SLURM_CONF": str(SLURM_CONF)}
    subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True)
    for daemon in DAEMONS:
        pid_file = folder / f"{daemon}.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
    SLURM_CONF.unlink(missing_ok=True)

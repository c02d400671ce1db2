"""A one-node Slurm cluster on this machine, for the test that runs the smoke experiment through
`--executor slurm`: munged, MariaDB, slurmdbd (the executor plugin polls job
states with sacct, so accounting must work), slurmctld and slurmd, from Debian's packages
(slurm-wlm 22.05, slurmdbd, munge, mariadb-server: workflow/scripts/setup_slurm.sh installs
them). Everything lives in one temporary folder (SLURM_CONF points there: nothing under /etc is
touched) and every daemon is stopped, and checked gone, on exit.

The node has this machine's CPUs, most of its memory and one GPU generic resource (count-only:
the scheduler allocates it, nothing is attached), in two partitions, `ci` (the default) and
`ci2` (the same node: a second platform's partition), and any more a test names, with account `ci`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
PARTITION = ACCOUNT = "ci"
SECOND_PARTITION = "ci2"  # the same node under a second name: a second platform's partition
CLUSTER = "moesdci"


def missing_tools() -> list[str]:
    tools = ["munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct"]
    return [t for t in tools if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]


def local_cluster(tmp_path_factory, partitions: tuple[str, ...] = ()):
    """A module fixture's body (`yield from`): the local cluster with PARTITIONS beside `ci` and
    `ci2`, skipped where it cannot start (failed under MOESD_REQUIRE_SLURM=1, CI), and checked
    gone afterwards."""
    import pytest

    missing = missing_tools()
    reason = f"Slurm is not set up here (missing {', '.join(missing)}): bash workflow/scripts/setup_slurm.sh"
    if os.geteuid() != 0:
        missing, reason = ["root"], "a local Slurm's daemons need root"
    if missing:
        if os.environ.get("MOESD_REQUIRE_SLURM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with SlurmCluster(tmp_path_factory.mktemp("slurm"), memory_mb=16_000, partitions=partitions) as running:
        yield running
    assert not running.running(), f"daemons left running: {running.running()}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    def __init__(self, root: Path, cpus: int | None = None, memory_mb: int = 16_000, partitions: tuple[str, ...] = ()):
        self.root = Path(root)
        self.cpus = cpus or os.cpu_count() or 2
        self.memory_mb = memory_mb
        self.partitions = (SECOND_PARTITION, *partitions)  # beside the default: more platforms' partitions
        self.host = socket.gethostname().split(".")[0]
        self.pids: dict[str, int] = {}
        self.env = dict(os.environ)

    # ---- set-up ---------------------------------------------------------------------------------
    def __enter__(self) -> SlurmCluster:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _run(self, *args, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=120, **kwargs)

    def _wait(self, what: str, check, timeout: float = 60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if check():
                return
            time.sleep(0.5)
        logs = "\n".join(f"{p.name}: {p.read_text()[-1500:]}" for p in self.root.glob("*.log"))
        raise RuntimeError(f"{what} did not come up within {timeout} s\n{logs}")

    def _pid(self, name: str, pidfile: Path):
        # the daemon creates the file before it writes its pid: wait for the number, not the file
        def written() -> bool:
            return pidfile.is_file() and pidfile.read_text().strip().isdigit()

        self._wait(f"{name} (pid file)", written, 60)
        self.pids[name] = int(pidfile.read_text().split()[0])

    def _start(self):
        r = self.root
        for sub in ("spool", "state", "db"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        # munge: its own key and socket
        key = r / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)
        sock = Path("/run/munge/munge.socket.2")  # the clients (sacctmgr, sbatch) look there, whatever AuthInfo says
        if sock.exists():
            raise RuntimeError(f"{sock} exists: another munged runs here; stop it first")
        sock.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [_tool("munged"), "--force", f"--key-file={key}", f"--socket={sock}", f"--pid-file={r}/munged.pid",
             f"--log-file={r}/munged.log", f"--seed-file={r}/munged.seed"], check=True, timeout=60,
        )  # fmt: skip
        self._pid("munged", r / "munged.pid")
        # MariaDB on a free local port, for slurmdbd
        db_port, dbd_port = _free_port(), _free_port()
        self._run(
            _tool("mariadb-install-db"),
            f"--datadir={r}/db",
            "--user=root",
            "--auth-root-authentication-method=normal",
            check=True,
        )
        subprocess.Popen(
            [_tool("mariadbd"), "--no-defaults", f"--datadir={r}/db", "--user=root", f"--socket={r}/mysql.sock",
             f"--port={db_port}", "--bind-address=127.0.0.1", f"--pid-file={r}/mariadb.pid", f"--log-error={r}/mariadb.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self._pid("mariadbd", r / "mariadb.pid")
        self._wait(
            "MariaDB", lambda: self._run("mariadb", f"--socket={r}/mysql.sock", "-e", "select 1").returncode == 0
        )
        password = secrets.token_hex(8)
        grant = (
            f"create user 'slurm'@'127.0.0.1' identified by '{password}'; "
            "grant all on slurm_acct_db.* to 'slurm'@'127.0.0.1'; flush privileges;"
        )
        self._run("mariadb", f"--socket={r}/mysql.sock", "-e", grant, check=True)
        auth = "AuthType=auth/munge\n"
        dbd = r / "slurmdbd.conf"
        dbd.write_text(
            f"{auth}DbdHost=localhost\nDbdPort={dbd_port}\nSlurmUser=root\nPidFile={r}/slurmdbd.pid\n"
            f"LogFile={r}/slurmdbd.log\nStorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
            f"StoragePort={db_port}\nStorageUser=slurm\nStoragePass={password}\nStorageLoc=slurm_acct_db\n"
        )
        dbd.chmod(0o600)
        conf = r / "slurm.conf"
        ctld_port, slurmd_port = _free_port(), _free_port()
        conf.write_text(
            f"ClusterName={CLUSTER}\nSlurmctldHost={self.host}\nSlurmUser=root\n{auth}"
            f"SlurmctldPort={ctld_port}\nSlurmdPort={slurmd_port}\n"
            f"StateSaveLocation={r}/state\nSlurmdSpoolDir={r}/spool\n"
            f"SlurmctldPidFile={r}/slurmctld.pid\nSlurmdPidFile={r}/slurmd.pid\n"
            f"SlurmctldLogFile={r}/slurmctld.log\nSlurmdLogFile={r}/slurmd.log\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\nGresTypes=gpu\n"
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
            f"AccountingStoragePort={dbd_port}\nAccountingStorageTRES=gres/gpu\nAccountingStoreFlags=job_comment\n"
            "JobAcctGatherType=jobacct_gather/none\nJobCompType=jobcomp/none\nMinJobAge=300\n"
            "SchedulerParameters=sched_interval=1\nReturnToService=2\n"
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} Gres=gpu:1 State=UNKNOWN\n"
            f"PartitionName={PARTITION} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP\n"
            + "".join(f"PartitionName={name} Nodes={self.host} MaxTime=INFINITE State=UP\n" for name in self.partitions)
        )
        # a GPU that the scheduler counts and allocates: Slurm drops a file-less GPU, so it names /dev/null
        (r / "gres.conf").write_text(f"NodeName={self.host} Name=gpu File=/dev/null\n")
        self.env["SLURM_CONF"] = str(conf)  # slurmdbd reads slurmdbd.conf beside it
        # Snakemake's job step drops SLURM_* from the environment of the srun it starts inside a
        # job, and srun then looks in /etc/slurm: a shim first on PATH gives it this config.
        (r / "bin").mkdir(exist_ok=True)
        shim = r / "bin/srun"
        shim.write_text(f'#!/bin/sh\nSLURM_CONF={conf} exec {shutil.which("srun") or "/usr/bin/srun"} "$@"\n')
        shim.chmod(0o755)
        self.env["PATH"] = f"{r / 'bin'}{os.pathsep}{self.env.get('PATH', '')}"
        self._run(_tool("slurmdbd"), check=True)
        self._pid("slurmdbd", r / "slurmdbd.pid")
        self._wait("slurmdbd", lambda: self._run("sacctmgr", "-n", "list", "cluster").returncode == 0)
        for command in (["add", "cluster", CLUSTER], ["add", "account", ACCOUNT, f"Cluster={CLUSTER}"],
                        ["add", "user", "root", f"Account={ACCOUNT}", f"Cluster={CLUSTER}"]):  # fmt: skip
            self._run("sacctmgr", "-i", *command)
        self._run(_tool("slurmctld"), check=True)
        self._pid("slurmctld", r / "slurmctld.pid")
        self._run(_tool("slurmd"), "-N", self.host, check=True)
        self._pid("slurmd", r / "slurmd.pid")
        self._wait("the node", self._node_idle, 90)

    def _node_idle(self) -> bool:
        state = self._run("sinfo", "-h", "-N", "-o", "%T").stdout.strip()
        return state.startswith("idle")

    # ---- use --------------------------------------------------------------------------------------
    def jobs(self, include: str | None = None, timeout: float = 60) -> list[dict]:
        """Accounting records of every job (allocations only): the fields a test checks. slurmctld
        passes records to slurmdbd asynchronously, so this waits (up to TIMEOUT seconds) until
        every job has ended there and job INCLUDE, if given, is among them."""
        fields = ["JobID", "JobName", "State", "ExitCode", "ReqCPUS", "ReqMem", "Timelimit", "ReqTRES", "AllocTRES",
                  "Partition", "Account", "Comment", "Start", "End"]  # fmt: skip
        deadline = time.time() + timeout
        while True:
            out = self._run("sacct", "-X", "-a", "-n", "-P", "-S", "2000-01-01", f"--format={','.join(fields)}").stdout
            jobs = [dict(zip(fields, line.split("|"), strict=False)) for line in out.splitlines() if line.strip()]
            ended = all(j["State"] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED") for j in jobs)
            if (ended and (include is None or any(j["JobID"] == include for j in jobs))) or time.time() > deadline:
                return jobs
            time.sleep(1)

    # ---- tear-down --------------------------------------------------------------------------------
    def __exit__(self, *exc):
        if "slurmctld" in self.pids:
            self._run("scontrol", "shutdown")
        for name in reversed(DAEMONS):
            pid = self.pids.get(name)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.time() + 30
            while time.time() < deadline and _alive(pid):
                time.sleep(0.2)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    def running(self) -> list[str]:
        return [name for name, pid in self.pids.items() if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child counts as gone
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        return state != "Z"
    except OSError:
        return False

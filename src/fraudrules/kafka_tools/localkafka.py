"""A real single-node Apache Kafka broker (KRaft) on 127.0.0.1, without Docker.

Used by ``make kafka-up`` / ``make kafka-down``, the pytest session fixture, ``make demo`` and
``make bench``; import it as ``fraudrules.kafka_tools.localkafka``. Standard library only, so that it
also runs as a script before the project is installed (this is what the Makefile does).

The broker's classpath comes from Maven Central through ``pom.xml`` next to this file
(``mvn dependency:copy-dependencies`` into a cache folder, ``~/.cache/fraudrules/kafka-lib``, or
``$FRAUDRULES_KAFKA_LIB``; ``~/.m2`` caches the downloads).

    python src/fraudrules/kafka_tools/localkafka.py up [--port 9092] [--dir .kafka] [--quick-jit]
    python src/fraudrules/kafka_tools/localkafka.py down [--dir .kafka]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.properties"
#: Where the broker's jars are copied: outside the source tree and the installed package.
LIB = Path(
    os.environ.get("FRAUDRULES_KAFKA_LIB")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fraudrules" / "kafka-lib"
)

#: SASL/PLAIN users of the optional SASL listener: user -> password.
DEFAULT_SASL_USERS = {"admin": "admin-secret", "fraudrules": "fraudrules-secret"}


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or stopped."""


def ensure_classpath() -> Path:
    """Copy the broker's jars into :data:`LIB` (once per pom.xml content; ~/.m2 caches the downloads)."""
    stamp = LIB / ".pom-sha256"
    pom_hash = hashlib.sha256(POM.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == pom_hash:
        return LIB
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven ('mvn') is required to fetch Apache Kafka from Maven Central")
    shutil.rmtree(LIB, ignore_errors=True)
    started = time.monotonic()
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-Dkafka.lib={LIB}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BrokerError(f"mvn dependency:copy-dependencies failed:\n{result.stdout}\n{result.stderr}")
    stamp.write_text(pom_hash)
    print(f"fetched Kafka classpath into {LIB} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return LIB


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (each socket held until all are chosen, so no port comes twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class LocalKafka:
    """One broker+controller process with its data, config and log under ``workdir``."""

    workdir: Path
    port: int = 9092
    controller_port: int = 0
    sasl_port: int | None = None
    sasl_users: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SASL_USERS))
    heap: str = "1g"
    #: Compile with the JVM's quick compiler only (C1, ``-XX:TieredStopAtLevel=1``): for a broker that lives a
    #: few minutes beside the app on the same cores (``make demo``). A new broker's compilers (C1 and C2)
    #: work for minutes and took over half its CPU in the first of them (BENCHMARKS "Changes and gains").
    quick_jit: bool = False
    #: How long the group coordinator waits for more members before a new group's first assignment. Kafka's
    #: default is 3 s; the tests' 0 lets each test's group start at once. ``make bench`` keeps Kafka's: with 0,
    #: of two instances started together the first read alone until the second had joined and the first had
    #: noticed (3-6 s), which measured a rebalance rather than two instances.
    initial_rebalance_delay_ms: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str | None:
        return None if self.sasl_port is None else f"127.0.0.1:{self.sasl_port}"

    @property
    def pidfile(self) -> Path:
        return self.workdir / "kafka.pid"

    @property
    def logfile(self) -> Path:
        return self.workdir / "kafka.log"

    def _server_properties(self) -> str:
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}", f"CONTROLLER://127.0.0.1:{self.controller_port}"]
        protocol_map = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        advertised = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        extra: list[str] = []
        if self.sasl_port is not None:
            listeners.append(f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}")
            advertised.append(f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}")
            protocol_map.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
            users = " ".join(f'user_{name}="{password}"' for name, password in self.sasl_users.items())
            extra += [
                "sasl.enabled.mechanisms=PLAIN",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="admin" password="{self.sasl_users["admin"]}" {users};',
            ]
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
            f"listeners={','.join(listeners)}",
            f"advertised.listeners={','.join(advertised)}",
            f"listener.security.protocol.map={','.join(protocol_map)}",
            "inter.broker.listener.name=PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            f"log.dirs={self.workdir / 'data'}",
            "num.partitions=1",
            "default.replication.factor=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "min.insync.replicas=1",
            f"group.initial.rebalance.delay.ms={self.initial_rebalance_delay_ms}",
            "auto.create.topics.enable=true",
            "log.segment.bytes=104857600",
            "message.max.bytes=4194304",
            *extra,
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 90.0) -> LocalKafka:
        if port_open(self.port):
            raise BrokerError(f"port {self.port} is already in use: is a broker running? (make kafka-down)")
        lib = ensure_classpath()
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java 17+ ('java') is required to run the local Kafka broker")
        if not self.controller_port:
            # a port just handed out by free_port() is free again until someone binds it: never take it twice
            self.controller_port = next(p for p in iter(free_port, 0) if p not in (self.port, self.sasl_port))
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        config = self.workdir / "server.properties"
        config.write_text(self._server_properties())
        classpath = f"{lib}/*"
        jvm = [
            java,
            *self._jvm_options(),
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={self.workdir}",
            "-cp",
            classpath,
        ]
        started = time.monotonic()
        cluster_id = uuid.uuid4().hex[:22]
        fmt = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(config)],
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{fmt.stdout}\n{fmt.stderr}")
        log = self.logfile.open("ab")
        self.process = subprocess.Popen(
            [*jvm, "kafka.Kafka", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pidfile.write_text(str(self.process.pid))
        deadline = started + timeout
        ports = [self.port] + ([self.sasl_port] if self.sasl_port is not None else [])
        while not all(port_open(p) for p in ports):
            if self.process.poll() is not None:
                raise BrokerError(f"Kafka exited with {self.process.returncode}; see {self.logfile}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"Kafka did not open port {self.port} within {timeout:.0f}s; see {self.logfile}")
            time.sleep(0.2)
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self, timeout: float = 30.0) -> None:
        pid = self._pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            self.pidfile.unlink(missing_ok=True)
            return
        deadline = time.monotonic() + timeout
        while _alive(pid, self.process) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid, self.process):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid, self.process):
                time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)

    def kill(self) -> None:
        """Stop the broker abruptly (kill -9), keeping its data for a restart."""
        pid = self._pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while _alive(pid, self.process):
                time.sleep(0.05)

    def _jvm_options(self) -> list[str]:
        """The JVM options Kafka's own start scripts give a broker (``kafka-server-start.sh``: a fixed heap;
        ``kafka-run-class.sh``: G1 aiming at 20 ms pauses). With G1's default aim (200 ms) and a heap grown from
        256 MB, the young collections of a busy broker paused it up to ~180 ms about once a second, and every
        client waiting for an acknowledgement then, the app's checkpoint included, waited as long."""
        return [
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:MaxInlineLevel=15",
            "-Djava.awt.headless=true",
            *(["-XX:TieredStopAtLevel=1"] if self.quick_jit else []),
        ]

    def restart(self, timeout: float = 90.0) -> None:
        """Start the same broker again on its existing data (after stop or kill)."""
        java = shutil.which("java") or "java"
        config = self.workdir / "server.properties"
        log = self.logfile.open("ab")
        self.process = subprocess.Popen(
            [
                java,
                *self._jvm_options(),
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                "-cp",
                f"{LIB}/*",
                "kafka.Kafka",
                str(config),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pidfile.write_text(str(self.process.pid))
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BrokerError(f"Kafka did not come back; see {self.logfile}")
            time.sleep(0.2)

    def _pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid
        if self.pidfile.exists():
            return int(self.pidfile.read_text().strip())
        return None


def _alive(pid: int, process: subprocess.Popen[bytes] | None) -> bool:
    if process is not None:
        return process.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="fetch (once), format and start the broker; prints the bootstrap address")
    up.add_argument("--port", type=int, default=int(os.environ.get("KAFKA_PORT", "9092")))
    up.add_argument("--sasl-port", type=int, default=None)
    up.add_argument("--dir", type=Path, default=Path(".kafka"))
    up.add_argument(
        "--quick-jit",
        action="store_true",
        help="compile with the JVM's quick compiler only: less CPU in a broker's first minutes, slower after",
    )
    down = sub.add_parser("down", help="stop the broker started by 'up'")
    down.add_argument("--dir", type=Path, default=Path(".kafka"))
    sub.add_parser("fetch", help="only fetch the broker's classpath")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            ensure_classpath()
        elif args.command == "up":
            broker = LocalKafka(
                args.dir.resolve(), port=args.port, sasl_port=args.sasl_port, quick_jit=args.quick_jit
            ).start()
            pid = broker.process.pid if broker.process else "?"
            print(f"Kafka is up in {broker.startup_seconds:.1f}s (pid {pid})")
            print(f"bootstrap: {broker.bootstrap}")
        else:
            broker = LocalKafka(args.dir.resolve())
            if broker._pid() is None:
                print("no local broker is running")
            else:
                broker.stop()
                print("Kafka stopped")
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

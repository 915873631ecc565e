#!/usr/bin/env python3
"""The benchmark, in one command: the service against the reference ceiling, same database, same load.

    .venv/bin/python bench/run.py                 # 10,000 installations (a few minutes)
    .venv/bin/python bench/run.py --scale         # and support state at 1,000,000 installations, paired with 10,000
    .venv/bin/python bench/run.py --plans-only --installations 1000000   # the renewal pipeline's query plans only

Seeds PostgreSQL in bulk (COPY), starts the service as in production (uvicorn, one worker per core,
no access log) and the ceiling app (bench/ceiling/ceiling_app.py) on the same database, drives each
alone with wrk at the same concurrency, and writes bench/results/latest.json and the README table.
Traffic goes to 127.0.0.1 only; every run is bounded in time.
"""

import argparse
import asyncio
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy.dialects import postgresql  # noqa: E402

from service import installations, keyformat, migrate, rules  # noqa: E402
from service.auth import TokenSettings, issue_token  # noqa: E402
from service.certificates import generate_private_key, kid_of, public_key_of  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.trust import Root, make_root  # noqa: E402
from tests.pgbouncer import pgbouncer  # noqa: E402
from tests.servers import free_port  # noqa: E402

CEILING_DIR = ROOT / "bench" / "ceiling"
RESULTS = ROOT / "bench" / "results"
ADMIN_DSN = os.environ.get("BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/test")
DATABASE = "timex_bench"
SCALE_DATABASE = "timex_bench_scale"  # 1,000,000 installations, beside the 10,000 of DATABASE
PLANS_DATABASE = "timex_bench_plans"  # --plans-only: apart from a benchmark's databases
SCALE_INSTALLATIONS, SCALE_KEYS = 1_000_000, 3_000_000
KEY_SECRET = "bench-key-hash-secret-of-32-bytes!"  # production refuses a secret under 32 bytes
JWT_SECRET = "bench-jwt-secret-of-at-least-32-bytes"
WORKERS = os.cpu_count() or 2
THREADS = 2
KEYS_PER_THREAD = 20_000  # a 10 s run at 2,000 activations/s takes 10,000 of them a thread
RESELLERS = 10
MAX_ROUNDS = 5  # each round activates a fresh set of keys, and the half-peak run another: 6 sets are seeded
POOLED_SETS = 2 * MAX_ROUNDS  # and the pooled comparison's rounds two each (direct, through PgBouncer)
POOL_SERVER_CONNECTIONS = 10  # PgBouncer's server connections for the service's 2 × DATABASE_POOL_SIZE
REDIS_SET = MAX_ROUNDS + 1 + POOLED_SETS  # the last: the activation run with the limiter in Redis
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


AUTOGROUP = Path("/proc/sys/kernel/sched_autogroup_enabled")


def scheduler() -> str:
    """The kernel's autogroup setting: on, PostgreSQL's backends (their own session) share one scheduling group
    against the servers and wrk, and the reads' p99 at full load has outliers of up to a second, the ceiling's too
    (README, Performance)."""
    if not AUTOGROUP.exists():
        return "no autogroup scheduling"
    return f"kernel.sched_autogroup_enabled={AUTOGROUP.read_text().strip()}"


def bench_dsn(database: str = DATABASE) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + "/" + database


# --- seeding


def bench_key(i: int) -> str:
    """A valid key, the same on every run, so that wrk's key files need no database lookups."""
    digest = hashlib.sha256(f"bench-key-{i}".encode()).digest()
    return keyformat.from_data([b % 32 for b in digest[: keyformat.DATA_SYMBOLS]])


async def drop_database(database: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    await conn.close()


async def recreate_database(database: str) -> None:
    await drop_database(database)
    conn = await asyncpg.connect(ADMIN_DSN)
    await conn.execute(f'CREATE DATABASE "{database}"')
    await conn.close()


def seeded_installation(i: int, resellers: list[uuid.UUID], today: dt.date) -> tuple:
    """Every one active (every activation earns the bonus), their support ends spread over the year ahead (the
    renewal pipeline's order), each sold by one of the resellers."""
    anchor = today - dt.timedelta(days=30 + i % 300)
    return (f"INST{i:09d}", resellers[i % len(resellers)], anchor, 12, 12, 0)


async def seed_service(dsn: str, installations: int, keys: int) -> None:
    conn = await asyncpg.connect(dsn)
    resellers = [uuid.uuid4() for _ in range(RESELLERS)]
    await conn.copy_records_to_table(
        "resellers",
        columns=["id", "name", "client_id", "secret_hash"],
        records=[(r, f"Reseller {n}", f"bench-{n}", "none: no login") for n, r in enumerate(resellers)],
    )
    today = dt.date.today()
    await conn.copy_records_to_table(
        "installations",
        columns=["code", "reseller_id", "anchor", "initial_months", "months", "bonus_months"],
        records=(seeded_installation(i, resellers, today) for i in range(installations)),
    )
    await conn.copy_records_to_table(
        "support_ends",
        columns=["installation_id", "reseller_id", "support_end"],
        records=(
            (row["id"], row["reseller_id"], rules.add_months(row["anchor"], row["months"]))
            for row in await conn.fetch("SELECT id, reseller_id, anchor, months FROM installations")
        ),
    )
    secret = KEY_SECRET.encode()
    batch = 200_000
    for start in range(0, keys, batch):
        records = []
        for i in range(start, min(start + batch, keys)):
            key = bench_key(i)
            records.append(
                (
                    uuid.uuid4(),
                    hmac.new(secret, key.encode(), hashlib.sha256).digest(),
                    keyformat.display_prefix(key),
                    "issued",
                )
            )
        await conn.copy_records_to_table("license_keys", columns=["id", "digest", "prefix", "status"], records=records)
    await conn.execute("VACUUM ANALYZE")
    await conn.close()


def write_key_files(first: int) -> str:
    prefix = str(RESULTS / "keys-thread-")
    for thread in range(THREADS):
        offset = first + thread * KEYS_PER_THREAD
        Path(f"{prefix}{thread}.txt").write_text("\n".join(bench_key(offset + i) for i in range(KEYS_PER_THREAD)))
    return prefix


async def explain(dsn: str, installations: int) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    code = f"INST{installations // 2:09d}"
    plans = {
        "support_state": "EXPLAIN ANALYZE SELECT anchor, months, bonus_months FROM installations WHERE code = $1",
        "activation_lock": "EXPLAIN ANALYZE SELECT id, anchor, months FROM installations WHERE code = $1 FOR UPDATE",
    }
    out = {name: "\n".join(r[0] for r in await conn.fetch(sql, code)) for name, sql in plans.items()}
    digest = hmac.new(KEY_SECRET.encode(), bench_key(1).encode(), hashlib.sha256).digest()
    out["key_lookup"] = "\n".join(
        r[0]
        for r in await conn.fetch(
            "EXPLAIN ANALYZE SELECT id, status FROM license_keys WHERE digest = ANY($1::bytea[])", [digest]
        )
    )
    out.update(await explain_pipeline(conn))
    await conn.close()
    return out


async def explain_pipeline(conn: asyncpg.Connection) -> dict[str, str]:
    """The renewal pipeline's list (`GET /v1/installations?state=expiring`), its first and a later page, for an
    admin and for one reseller: the statement the service runs, with its values written in."""
    today = dt.date.today()
    reseller = await conn.fetchval("SELECT id FROM resellers ORDER BY name LIMIT 1")
    first, last = rules.pipeline_support_ends("expiring", today, 60)
    queries = {
        "pipeline_admin": dict(owner=None, after=None),
        "pipeline_admin_later_page": dict(owner=None, after=(today + dt.timedelta(days=45), 0)),
        "pipeline_reseller": dict(owner=reseller, after=None),
        "pipeline_reseller_later_page": dict(owner=reseller, after=(today + dt.timedelta(days=45), 0)),
    }
    plans = {}
    for name, query in queries.items():
        statement = installations.pipeline_query(
            support_end_from=first, support_end_to=last, code_prefix=None, limit=101, **query
        )
        sql = str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
        plans[name] = "\n".join(r[0] for r in await conn.fetch("EXPLAIN ANALYZE " + sql))
    return plans


def print_plans(plans: dict[str, str]) -> None:
    for name, plan in plans.items():
        if name.startswith("pipeline"):
            print(f"--- {name}\n{plan}")


# --- processes


def service_env(dsn: str, pooled: bool = False, redis_url: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "DATABASE_TRANSACTION_POOLER": str(pooled).lower(),
        "ENVIRONMENT": "production",
        "JWT_SECRET": JWT_SECRET,
        "KEY_HASH_SECRET": KEY_SECRET,
        **CERTIFICATE_SETTINGS,
        "TRUSTED_PROXIES": '["127.0.0.1"]',
    }
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


def _certificate_settings() -> dict[str, str]:
    """As in production: a signing key given by CERTIFICATE_PRIVATE_KEY, certified by a root made for the run."""
    now = dt.datetime.now(dt.UTC)
    root_key, root_pem = make_root("bench root", now)
    root = Root(x509.load_pem_x509_certificate(root_pem)).with_key(root_key)
    key = generate_private_key()
    der = root.certify(public_key_of(key), kid_of(key), now, now + dt.timedelta(days=400))
    chain = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()
    return {"ROOT_CERTIFICATE": root_pem.decode(), "CERTIFICATE_PRIVATE_KEY": key, "CERTIFICATE_CHAIN": chain}


CERTIFICATE_SETTINGS = _certificate_settings()


@contextmanager
def process(command: list[str], env: dict[str, str], url: str, cwd: Path = ROOT):
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} did not start") from None
                time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(20)


def start_service(
    stack: ExitStack,
    workers: int = WORKERS,
    dsn: str | None = None,
    pooled: bool = False,
    redis_url: str | None = None,
) -> tuple[str, subprocess.Popen]:
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "timex-licensing"),
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
    ]
    url = f"http://127.0.0.1:{port}"
    env = service_env(dsn or bench_dsn(), pooled, redis_url)
    return url, stack.enter_context(process(command, env, url + "/healthz"))


def start_ceiling(stack: ExitStack) -> tuple[str, subprocess.Popen]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "ceiling_app:app",
        "--port",
        str(port),
        "--workers",
        str(WORKERS),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    env = {**os.environ, "CEILING_DSN": bench_dsn()}
    url = f"http://127.0.0.1:{port}"
    return url, stack.enter_context(
        process(command, env, url + "/ceiling/installations/INST000000000", cwd=CEILING_DIR)
    )


# --- load


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk(url: str, script: Path, args: list[str], duration: int, connections: int) -> dict:
    command = [
        "wrk",
        "-t",
        str(THREADS),
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--latency",
        "-s",
        str(script),
        url,
        "--",
        *args,
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60).stdout

    def latency(percent: str) -> float:
        found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
        if found is None:
            raise RuntimeError(f"wrk gave no {percent}% latency for {url}:\n{out}")
        value, unit = found.groups()
        return round(float(value) * _UNITS[unit], 3)

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


# --- CPU: what each request costs each process, read from /proc (steady on a busy machine, unlike req/s)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn's workers, the PgBouncer that `runuser` started)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in children:
            pids.extend(process_tree(int(child)))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime: the stat line's 14th and 15th fields
    return ticks / os.sysconf("SC_CLK_TCK")


async def backend_pids(database: str) -> list[int]:
    """The PostgreSQL backends connected to `database` (the service's, directly or PgBouncer's)."""
    conn = await asyncpg.connect(ADMIN_DSN)
    rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", database)
    await conn.close()
    return [row["pid"] for row in rows]


Processes = list[int] | Callable[[], list[int]]
"""A group's processes, or how to list them: listed again after a run, so that one started during it (a backend
for a connection the pool opened) counts too, from nothing."""


def costed_wrk(processes: dict[str, Processes], url: str, script: Path, args: list[str], duration: int, c: int) -> dict:
    """A wrk run, and the CPU µs per request it cost each group of `processes`."""
    listed = {name: group() if callable(group) else group for name, group in processes.items()}
    before = {name: {pid: cpu_seconds([pid]) for pid in pids} for name, pids in listed.items()}
    run = wrk(url, script, args, duration, c)
    spent = {}
    for name, group in processes.items():
        # One that ended during the run is not counted (its time went with it); the pools keep theirs through a run.
        pids = group() if callable(group) else group
        spent[name] = sum(cpu_seconds([pid]) - before[name].get(pid, 0.0) for pid in pids)
    return {**run, "cpu_us": {name: round(seconds * 1e6 / max(run["requests"], 1)) for name, seconds in spent.items()}}


def measure_pooled(args: argparse.Namespace, installations: int) -> dict:
    """Each hot path on a service connected directly and on one through PgBouncer in transaction mode
    (`DATABASE_TRANSACTION_POOLER=true`), paired by round as the ceiling ratios are, and the CPU each request
    cost the service, PgBouncer and PostgreSQL's backends."""
    script = ROOT / "bench" / "wrk_service.lua"
    d, c = args.duration, args.connections
    rounds: dict[str, list[dict]] = {}
    with ExitStack() as stack:
        bouncer = stack.enter_context(pgbouncer(bench_dsn(), pool_size=POOL_SERVER_CONNECTIONS))
        services = {"direct": start_service(stack), "pooled": start_service(stack, dsn=bouncer.url, pooled=True)}
        for url, _ in services.values():
            wrk(url, script, ["support", str(installations)], 2, c)  # warm-up: pools, caches
        for round_ in range(args.rounds):
            for path in ("support", "quote", "activate"):
                for n, (name, (url, proc)) in enumerate(services.items()):
                    # Both services' backends: each is idle while the other is loaded.
                    processes: dict[str, Processes] = {
                        "service": process_tree(proc.pid),
                        "postgres": lambda: asyncio.run(backend_pids(DATABASE)),
                    }
                    if name == "pooled":
                        processes["pgbouncer"] = process_tree(bouncer.pid)
                    extra = []
                    if path == "activate":
                        first_set = MAX_ROUNDS + 1 + 2 * round_ + n
                        extra = ["0", write_key_files(first=first_set * THREADS * KEYS_PER_THREAD)]
                    run = costed_wrk(processes, url, script, [path, str(installations), *extra], d, c)
                    rounds.setdefault(f"{path}_{name}", []).append(run)
    results = {}
    for path in ("support", "quote", "activate"):
        direct, pooled = rounds[f"{path}_direct"], rounds[f"{path}_pooled"]
        ratios = sorted(p["rps"] / q["rps"] for p, q in zip(pooled, direct, strict=True))
        results[path] = {
            "direct": _median_run(direct),
            "pooled": _median_run(pooled),
            "ratio": round(ratios[len(ratios) // 2], 3),
        }
    return results


async def _reset_ceiling_keys() -> None:
    """The ceiling's wrk script always activates the same keys: make them unused again."""
    conn = await asyncpg.connect(bench_dsn())
    await conn.execute(
        "UPDATE ceiling_key SET installation_id = NULL, activated_at = NULL WHERE activated_at IS NOT NULL"
    )
    await conn.close()


def _median_run(runs: list[dict]) -> dict:
    """The run with the median throughput, and every round's throughput beside it."""
    ranked = sorted(runs, key=lambda run: run["rps"])
    return {**ranked[len(ranked) // 2], "rounds_rps": [run["rps"] for run in runs]}


def _median_cpu(runs: list[dict], name: str) -> int:
    """The median round's CPU µs per request of the processes `name` (`costed_wrk`)."""
    cpu = sorted(run["cpu_us"][name] for run in runs)
    return cpu[len(cpu) // 2]


async def _hot_updates() -> dict[str, list[int]]:
    """Updates and HOT updates of the tables an activation updates, since the statistics were reset."""
    conn = await asyncpg.connect(bench_dsn())
    rows = await conn.fetch(
        "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
        "WHERE relname IN ('installations', 'support_ends', 'license_keys') ORDER BY relname"
    )
    await conn.close()
    return {row["relname"]: [row["n_tup_upd"], row["n_tup_hot_upd"]] for row in rows}


async def _reset_statistics() -> None:
    conn = await asyncpg.connect(bench_dsn())
    await conn.execute("SELECT pg_stat_reset()")
    await conn.close()


def measure(args: argparse.Namespace, installations: int) -> dict:
    """Each hot path and its ceiling, one after the other, in `args.rounds` rounds; each figure is the median
    round, so that a passing slowdown of this shared machine moves one round, not the result."""
    script = ROOT / "bench" / "wrk_service.lua"
    ceiling_status, ceiling_activate = CEILING_DIR / "wrk_status.lua", CEILING_DIR / "wrk_activate.lua"
    d, c = args.duration, args.connections
    reads = args.read_connections or c
    rounds: dict[str, list[dict]] = {}
    with ExitStack() as stack:
        service, service_proc = start_service(stack)
        ceiling, ceiling_proc = start_ceiling(stack)
        # CPU per request: each server's processes (uvicorn's and its workers), from /proc.
        service_cpu = {"service": process_tree(service_proc.pid)}
        ceiling_cpu = {"ceiling": process_tree(ceiling_proc.pid)}
        wrk(service, script, ["support", str(installations)], 2, c)  # warm-up: pools, caches
        wrk(f"{ceiling}/ceiling/installations/", ceiling_status, [str(installations)], 2, c)
        asyncio.run(_reset_statistics())
        for round_ in range(args.rounds):
            runs = {
                "ceiling_read": costed_wrk(
                    ceiling_cpu, f"{ceiling}/ceiling/installations/", ceiling_status, [str(installations)], d, reads
                )
            }
            for path in ("support", "quote"):
                runs[path] = costed_wrk(service_cpu, service, script, [path, str(installations)], d, reads)
            asyncio.run(_reset_ceiling_keys())
            runs["ceiling_activate"] = costed_wrk(
                ceiling_cpu, f"{ceiling}/ceiling/activations", ceiling_activate, [str(installations), "50000"], d, c
            )
            key_files = write_key_files(first=round_ * THREADS * KEYS_PER_THREAD)
            activate = ["activate", str(installations), "0", key_files]
            runs["activate"] = costed_wrk(service_cpu, service, script, activate, d, c)
            for name, run in runs.items():
                rounds.setdefault(name, []).append(run)
        results = {
            name: {
                **_median_run(runs),
                "cpu_us_median": _median_cpu(runs, "ceiling" if "ceiling" in name else "service"),
            }
            for name, runs in rounds.items()
        }
        for path, ceiling_path in (
            ("support", "ceiling_read"),
            ("quote", "ceiling_read"),
            ("activate", "ceiling_activate"),
        ):
            # Paired by round: a path and its ceiling ran a few seconds apart, on the machine as it was then.
            ratios = sorted(
                mine["rps"] / theirs["rps"] for mine, theirs in zip(rounds[path], rounds[ceiling_path], strict=True)
            )
            results[path]["ratio"] = round(ratios[len(ratios) // 2], 3)
        results["hot_updates"] = asyncio.run(_hot_updates())
        # p99 at half the measured peak: each connection paced to deliver half the peak rate in all.
        half = 16
        for path in ("support", "quote"):
            pause = max(1, round(half * 1000 / (results[path]["rps"] / 2)))
            results[f"{path}_half_peak"] = wrk(service, script, [path, str(installations), str(pause)], d, half)
        key_files = write_key_files(first=MAX_ROUNDS * THREADS * KEYS_PER_THREAD)
        pause = max(1, round(half * 1000 / (results["activate"]["rps"] / 2)))
        results["activate_half_peak"] = wrk(
            service, script, ["activate", str(installations), str(pause), key_files], d, half
        )
    results["activate_redis"] = measure_redis_limiter(args, installations)
    return results


def measure_redis_limiter(args: argparse.Namespace, installations: int) -> dict:
    """One full-load activation run with the rate limiter counting in Redis (`REDIS_URL`), as several
    instances would run it: what the shared limiter costs an activation."""
    script = ROOT / "bench" / "wrk_service.lua"
    with ExitStack() as stack:
        service, proc = start_service(stack, redis_url=REDIS_URL)
        wrk(service, script, ["support", str(installations)], 2, args.connections)  # warm-up
        key_files = write_key_files(first=REDIS_SET * THREADS * KEYS_PER_THREAD)
        activate = ["activate", str(installations), "0", key_files]
        return costed_wrk(
            {"service": process_tree(proc.pid)}, service, script, activate, args.duration, args.connections
        )


def measure_scale(args: argparse.Namespace, installations: int) -> dict:
    """Support state at SCALE_INSTALLATIONS against `installations`, paired by round as the ceiling ratios are:
    a service runs on each database and every round loads one, then the other. Measured minutes apart, this
    machine's drift (±15 %) would decide the comparison rather than the tables' size."""
    script = ROOT / "bench" / "wrk_service.lua"
    d, c = args.duration, args.connections
    sizes = (installations, SCALE_INSTALLATIONS)
    rounds: dict[int, list[dict]] = {size: [] for size in sizes}
    with ExitStack() as stack:
        urls = {
            installations: start_service(stack)[0],
            SCALE_INSTALLATIONS: start_service(stack, dsn=bench_dsn(SCALE_DATABASE))[0],
        }
        for size in sizes:
            wrk(urls[size], script, ["support", str(size)], 2, c)  # warm-up: pools, caches
        for _ in range(args.rounds):
            for size in sizes:
                rounds[size].append(wrk(urls[size], script, ["support", str(size)], d, c))
    ratios = [
        big["rps"] / small["rps"] for small, big in zip(rounds[installations], rounds[SCALE_INSTALLATIONS], strict=True)
    ]
    return {
        **{str(size): _median_run(runs) for size, runs in rounds.items()},
        "ratios": [round(ratio, 3) for ratio in ratios],
        "ratio": round(sorted(ratios)[len(ratios) // 2], 3),
    }


def issue_keys(count: int) -> dict:
    with ExitStack() as stack:
        url, proc = start_service(stack, workers=1)
        token = issue_token(
            TokenSettings.of(Settings(_env_file=None, jwt_secret=JWT_SECRET)),
            "admin",
            "bench",
            dt.datetime.now(dt.UTC),
            dt.timedelta(minutes=10),
        )
        started = time.perf_counter()
        response = httpx.post(
            f"{url}/v1/keys", json={"count": count}, timeout=120, headers={"Authorization": f"Bearer {token}"}
        )
        seconds = time.perf_counter() - started
        peak_kib = int(re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{proc.pid}/status").read_text()).group(1))
    assert response.status_code == 201, response.text[:300]
    return {"count": count, "seconds": round(seconds, 2), "peak_rss_mb": round(peak_kib / 1024, 1)}


# --- report


def seed(database: str, installations: int, keys: int, ceiling: bool = True) -> None:
    dsn = bench_dsn(database)
    asyncio.run(recreate_database(database))
    migrate.upgrade(dsn, configure_logging=False)
    asyncio.run(seed_service(dsn, installations, keys))
    if ceiling:
        subprocess.run(
            [
                sys.executable,
                str(CEILING_DIR / "ceiling_app.py"),
                "seed",
                "--dsn",
                dsn,
                "--installations",
                str(installations),
                "--keys",
                str(max(keys, THREADS * 50_000)),
            ],
            check=True,
            capture_output=True,
            timeout=1800,
        )


TARGETS = {"support": 0.8, "quote": 0.8, "activate": 0.7}


def table(report: dict) -> str:
    small = report["runs"][str(report["installations"])]
    rows = [
        "| hot path | service req/s | p50 ms | p99 ms | ceiling req/s | ratio | ratio by round | target "
        "| CPU µs/request (service / ceiling) | p99 at half peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path, ceiling in (("support", "ceiling_read"), ("quote", "ceiling_read"), ("activate", "ceiling_activate")):
        r, half = small[path], small[f"{path}_half_peak"]
        by_round = ", ".join(
            f"{mine / theirs:.2f}" for mine, theirs in zip(r["rounds_rps"], small[ceiling]["rounds_rps"], strict=True)
        )
        rows.append(
            f"| {path} | {r['rps']:.0f} | {r['p50_ms']} | {r['p99_ms']} | {small[ceiling]['rps']:.0f} | "
            f"{r['ratio']}× | {by_round} | {TARGETS[path]}× | {r['cpu_us_median']:.0f} / "
            f"{small[ceiling]['cpu_us_median']:.0f} | {half['p99_ms']} ms at {half['rps']:.0f} req/s |"
        )
    redis = small["activate_redis"]
    hot = ", ".join(f"{table} {hot:,} of {updates:,}" for table, (updates, hot) in small["hot_updates"].items())
    lines = [
        "\n".join(rows),
        "Each figure is the median of the rounds; a round runs every path and its ceiling "
        "one after the other, and the ratio is the median of the rounds' ratios. CPU per request: the CPU time "
        "of the server's processes (from /proc) over the requests of a run, the median round.",
        f"Activations with the rate limiter in Redis (`REDIS_URL`), one run: {redis['rps']:.0f} req/s, p99 "
        f"{redis['p99_ms']} ms, {redis['cpu_us']['service']} µs of CPU per request.",
        f"HOT updates during the rounds (PostgreSQL's `pg_stat_user_tables`): {hot}.",
    ]
    if "pooled" in report:
        lines.append(pooled_table(report["pooled"]))
    if "scale" in report:
        scale, small = report["scale"], report["installations"]
        big_rps, small_rps = scale[str(SCALE_INSTALLATIONS)]["rps"], scale[str(small)]["rps"]
        lines.append(
            f"Support state at {SCALE_INSTALLATIONS:,} installations / {SCALE_KEYS:,} keys: {scale['ratio']}× "
            f"its throughput at {small:,} ({big_rps:.0f} against {small_rps:.0f} req/s; by round: "
            f"{', '.join(f'{ratio:.2f}' for ratio in scale['ratios'])}; target 0.9×). Each round loads a "
            "service on each database, one after the other."
        )
    if "issue_keys" in report:
        k = report["issue_keys"]
        lines.append(
            f"Issuing {k['count']:,} keys in one request: {k['seconds']} s, peak RSS {k['peak_rss_mb']} MB "
            "(targets: 10 s, 300 MB)."
        )
    command = "python bench/run.py" + (" --scale" if "scale" in report else "")
    if "connections" in report:
        command += f" --hot-paths-only --read-connections {report['connections']['reads']}"
    lines.append(f"Measured {report['when']} on {report['machine']}; `{command}`.")
    return "\n\n".join(lines)


def pooled_table(pooled: dict) -> str:
    rows = [
        "| through PgBouncer (transaction mode) | req/s | against direct | ratio by round "
        "| CPU µs/request: service | PgBouncer | PostgreSQL | direct: service | PostgreSQL |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path, result in pooled.items():
        mine, theirs = result["pooled"], result["direct"]
        by_round = ", ".join(f"{p / q:.2f}" for p, q in zip(mine["rounds_rps"], theirs["rounds_rps"], strict=True))
        rows.append(
            f"| {path} | {mine['rps']:.0f} | {result['ratio']}× of {theirs['rps']:.0f} | {by_round} | "
            f"{mine['cpu_us']['service']} | {mine['cpu_us']['pgbouncer']} | {mine['cpu_us']['postgres']} | "
            f"{theirs['cpu_us']['service']} | {theirs['cpu_us']['postgres']} |"
        )
    return "\n".join(rows)


def refresh_readme(text: str) -> None:
    readme = ROOT / "README.md"
    content = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in content:
        content = content[: content.index(start) + len(start)] + "\n" + text + "\n" + content[content.index(end) :]
        readme.write_text(content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--installations", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--read-connections", type=int, help="connections for the reads and their ceiling (default: --connections)"
    )
    parser.add_argument(
        "--hot-paths-only",
        action="store_true",
        help="only the hot paths against the ceiling (bench/results/hot-paths.json); not the README",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=MAX_ROUNDS,
        choices=range(1, MAX_ROUNDS + 1),
        help="rounds of every path and its ceiling; the median round counts",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="also the support state at 1,000,000 installations / 3,000,000 keys against 10,000",
    )
    parser.add_argument(
        "--pooled-only",
        action="store_true",
        help="only the hot paths through PgBouncer against direct, with the CPU each request costs; not the README",
    )
    parser.add_argument(
        "--plans-only",
        action="store_true",
        help="seed --installations (no keys to speak of) and print the pipeline's query plans; no load",
    )
    args = parser.parse_args()
    if args.plans_only:
        seed(PLANS_DATABASE, args.installations, 1, ceiling=False)
        print_plans(asyncio.run(explain(bench_dsn(PLANS_DATABASE), args.installations)))
        asyncio.run(drop_database(PLANS_DATABASE))
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    if scheduler().endswith("=1"):
        print(
            "kernel.sched_autogroup_enabled=1: expect outliers of up to a second in the reads' p99 at full load, the"
            " ceiling's too (README, Performance); `sysctl -w kernel.sched_autogroup_enabled=0` measures without them",
            file=sys.stderr,
        )
    RESULTS.mkdir(exist_ok=True)
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    report: dict = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {cpu.group(1) if cpu else 'unknown CPU'}, PostgreSQL local, {scheduler()}",
        "installations": args.installations,
        "runs": {},
    }
    keys = THREADS * KEYS_PER_THREAD * (REDIS_SET + 1)
    if args.pooled_only:
        seed(DATABASE, args.installations, keys, ceiling=False)
        pooled = measure_pooled(args, args.installations)
        (RESULTS / "pooled.json").write_text(json.dumps(pooled, indent=2) + "\n")
        for f in RESULTS.glob("keys-thread-*.txt"):
            f.unlink()
        print(pooled_table(pooled))
        return
    seed(DATABASE, args.installations, keys)
    report["runs"][str(args.installations)] = measure(args, args.installations)
    if args.hot_paths_only:
        report["connections"] = {"reads": args.read_connections or args.connections, "activations": args.connections}
        (RESULTS / "hot-paths.json").write_text(json.dumps(report, indent=2) + "\n")
        for f in RESULTS.glob("keys-thread-*.txt"):
            f.unlink()
        print(table(report))
        return
    report["pooled"] = measure_pooled(args, args.installations)
    report["plans"] = {str(args.installations): asyncio.run(explain(bench_dsn(), args.installations))}
    report["issue_keys"] = issue_keys(100_000)
    if args.scale:
        seed(SCALE_DATABASE, SCALE_INSTALLATIONS, SCALE_KEYS, ceiling=False)
        report["scale"] = measure_scale(args, args.installations)
        report["plans"][str(SCALE_INSTALLATIONS)] = asyncio.run(explain(bench_dsn(SCALE_DATABASE), SCALE_INSTALLATIONS))
        asyncio.run(drop_database(SCALE_DATABASE))  # 3,000,000 keys need not stay on the disk
    for f in RESULTS.glob("keys-thread-*.txt"):
        f.unlink()
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    text = table(report)
    refresh_readme(text)
    print(text)
    for installations_seeded, plans in report["plans"].items():
        print(f"\nQuery plans at {int(installations_seeded):,} installations:")
        print_plans(plans)


if __name__ == "__main__":
    main()

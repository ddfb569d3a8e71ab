"""The benchmark harness: ``python bench/run.py [--quick] [--db postgresql,mysql,sqlite] [--peers] [--profile]``.

One run, on one machine:

1. seeds (or reuses) the 1,000,000-row ``bench_items`` table in PostgreSQL,
   MariaDB/MySQL and SQLite (``seed``);
2. measures the floor: the raw driver running the same queries in-process,
   with and without JSON encoding, on 1 connection and with threads (``floors``);
3. starts ``mcp-flask serve`` (gunicorn + gevent workers) and checks the load
   generator's ceiling on /healthz and an MCP ping;
4. per database: the 10-row ``get_table_data`` at 1, 16 and 64 connections
   (wrk), 1k/10k/100k-row fetches with the server's peak RSS, 16 concurrent
   10k-row fetches, and the slow-query isolation scenario;
5. optionally the peer (Google's MCP Toolbox) on the same query (``--peers``)
   and a py-spy profile of the worker under the c16 PostgreSQL load (``--profile``);
6. prints the tables (ours beside the floor, with ratios) and writes
   ``bench/results/<timestamp>.json``.

See bench/README.md for the numbers measured on the project's machine.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(HERE))

from bench import floors, interpreter, loadgen, scenarios, seed  # noqa: E402
from bench.server import BenchServer  # noqa: E402

SERVICE = {"postgresql": "pg", "mysql": "mysql", "sqlite": "sqlite"}
RESULTS_DIR = os.path.join(HERE, "results")


def machine() -> dict:
    """nproc, CPU model, memory and load: the context every number needs."""
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gib": round(mem_kb / 1048576, 1),
            "python": platform.python_version(), "loadavg": loadavg(),
            "wrk": loadgen.wrk_path() is not None}


def loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


DEFAULT_REDIS = "redis://127.0.0.1:6379/15"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="short runs (2 s per point, c1 and c16, 1k and 10k rows): a smoke check, not a result")
    p.add_argument("--db", default="postgresql,mysql,sqlite", help="databases, comma-separated")
    p.add_argument("--rows", type=int, default=1_000_000, help="rows in bench_items (default 1,000,000)")
    p.add_argument("--seconds", type=float, help="seconds per load point (default 10, quick 2)")
    p.add_argument("--concurrency", help="connections, comma-separated (default 1,16,64; quick 1,16)")
    p.add_argument("--sizes", help="large-fetch sizes (default 1000,10000,100000; quick 1000,10000)")
    p.add_argument("--workers", default="auto",
                   help="gunicorn workers; 'auto' (default): one per core when Redis answers at --redis "
                        "(the recommended deployment), else 1. More than 1 needs Redis")
    p.add_argument("--pool", type=int, default=0,
                   help="database pool size per worker (default: max(16, 64 / workers), room for every "
                        "connection of the 64-connection point)")
    p.add_argument("--redis", default=DEFAULT_REDIS,
                   help=f"Redis URL for sessions shared by the workers (default {DEFAULT_REDIS}); "
                        "'' for none")
    p.add_argument("--worker-class", default="lean",
                   help="worker class (MCP_FLASK_WORKER_CLASS): lean (default: our HTTP loop in gunicorn's "
                        "gevent worker), gevent (gunicorn's own loop) or gevent_pywsgi (gevent's HTTP server)")
    p.add_argument("--stateless", action="store_true",
                   help="also run the 10-row call as 2026-07-28 stateless requests (no sessions)")
    p.add_argument("--no-floors", action="store_true", help="skip the raw-driver floors")
    p.add_argument("--no-isolation", action="store_true", help="skip the slow-query isolation scenario")
    p.add_argument("--peers", action="store_true", help="also run MCP Toolbox on the PostgreSQL query")
    p.add_argument("--profile", action="store_true", help="py-spy the worker under the c16 load (see --profile-db)")
    p.add_argument("--profile-db", default="postgresql", help="database to profile (default postgresql)")
    p.add_argument("--force-seed", action="store_true", help="re-create the benchmark tables")
    p.add_argument("--output", help="results file (default bench/results/<timestamp>.json)")
    p.add_argument("--python", default="auto",
                   help="interpreter to run under: 'auto' (default: the fastest CPython 3.11+ found, the "
                        "running one or the system's python3, timed; see bench/interpreter.py), 'current' "
                        "(the running one) or a path")
    args = p.parse_args(argv)
    args.dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    for d in args.dbs:
        if d not in SERVICE:
            p.error(f"unknown database {d!r}; choose from {', '.join(SERVICE)}")
    args.start_id = args.rows // 2
    args.seconds = args.seconds or (2.0 if args.quick else 10.0)
    args.conc = [int(c) for c in (args.concurrency or ("1,16" if args.quick else "1,16,64")).split(",")]
    sizes = args.sizes or ("1000,10000" if args.quick else "1000,10000,100000")
    args.size_list = [min(int(s), args.rows) for s in sizes.split(",")]
    reachable = bool(args.redis) and redis_answers(args.redis)
    if args.workers == "auto":
        args.workers = max(1, min(os.cpu_count() or 1, 8)) if reachable else 1
    else:
        try:
            args.workers = int(args.workers)
        except ValueError:
            p.error("--workers must be a number or 'auto'")
    if args.workers > 1 and not reachable:
        p.error(f"--workers > 1 needs a reachable Redis (--redis {args.redis or '(none)'}): "
                "sessions must be shared between workers")
    if args.workers == 1:
        args.redis = ""             # one worker keeps sessions in memory
    return args


def redis_answers(url: str) -> bool:
    """True when a Redis server answers PING at ``url`` within a second."""
    try:
        import redis
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no redis-py, or no server: run one worker
        return False


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args, selection: dict | None = None) -> dict:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results: dict = {"stamp": stamp, "machine": machine(), "interpreter": selection, "settings": {
        "rows": args.rows, "seconds": args.seconds, "concurrency": args.conc, "sizes": args.size_list,
        "workers": args.workers, "redis": bool(args.redis), "worker_class": args.worker_class, "quick": args.quick,
        "small_call": scenarios.small_args(args.start_id)}, "databases": {}}
    if not loadgen.wrk_path():
        log("wrk not found: using the Python load generator (client-bound near 2k calls/s); "
            "install wrk with: apt-get install -y wrk")
    os.makedirs(RESULTS_DIR, exist_ok=True)

    urls = {}
    for d in args.dbs:
        log(f"seeding {d} ({args.rows} rows)...")
        try:
            url, spent = seed.SEEDERS[d](args.rows, force=args.force_seed)
        except Exception as exc:  # noqa: BLE001 - a missing database skips its column, loudly
            log(f"  {d}: cannot seed: {type(exc).__name__}: {exc}")
            results["databases"][d] = {"skipped": f"cannot seed: {type(exc).__name__}: {exc}"}
            continue
        urls[d] = url
        results["databases"][d] = {"seed_s": round(spent, 3), "floor": {}, "ours": {}}
        log(f"  {d}: {'seeded in %.1f s' % spent if spent else 'reused the cached copy'}")

    if not urls:
        log("no database could be seeded: nothing to measure")
        results["machine"]["loadavg_end"] = loadavg()
        return results

    if not args.no_floors:
        for d in urls:
            sqlite_file = seed.sqlite_path(args.rows) if d == "sqlite" else None
            fl = results["databases"][d]["floor"]
            sql, params = floors.small_query(d, args.start_id)
            fl["small"] = {}
            for c in args.conc:
                for enc in floors.ENCODERS:
                    log(f"floor {d} c{c} {enc}...")
                    fl["small"].setdefault(c, {})[enc] = floors.throughput(
                        d, sql, params, c, max(1.0, args.seconds / 2), enc, sqlite_file)

    pool = args.pool or max(16, 64 // args.workers)

    def start_server(dbs, python=None) -> BenchServer:
        """The server with this run's settings, serving ``dbs`` (under ``python``, default ours)."""
        return BenchServer({SERVICE[d]: urls[d] for d in dbs}, workers=args.workers, redis_url=args.redis,
                           pool=pool, env={"MCP_FLASK_WORKER_CLASS": args.worker_class}, python=python)

    server = start_server(urls)
    try:
        results["server"] = {"workers": args.workers, "pool_size": pool, "worker_class": args.worker_class,
                             "idle_rss_mb": server.rss.current_kb() / 1024}
        first = SERVICE[next(iter(urls))]
        log("load generator ceiling...")
        results["ceiling"] = scenarios.ceiling(server, first, min(args.seconds, 5.0))
        for d in urls:
            svc = SERVICE[d]
            ours = results["databases"][d]["ours"]
            try:
                log(f"{d}: 10-row get_table_data at {args.conc}...")
                ours["small"] = scenarios.load_matrix(server, svc, args.seconds, args.conc, args.start_id)
                if args.stateless:
                    log(f"{d}: the same call, stateless (2026-07-28)...")
                    ours["small_stateless"] = scenarios.stateless_matrix(server, svc, args.seconds, args.conc,
                                                                         args.start_id)
                log(f"{d}: large fetches {args.size_list}...")
                ours["large"] = scenarios.large_fetches(server, svc, args.size_list)
                if not args.no_floors:
                    # The large-fetch floor right after ours, not minutes before: a slow stretch
                    # of the shared machine then weighs on both sides of the ratio.
                    sqlite_file = seed.sqlite_path(args.rows) if d == "sqlite" else None
                    results["databases"][d]["floor"]["large"] = {
                        n: floors.fetch_times(d, n, sqlite_file=sqlite_file) for n in args.size_list}
                if max(args.size_list) >= 10000:
                    ours["concurrent_10k"] = scenarios.concurrent_fetch_rss(server, svc)
                if not args.no_isolation and d != "sqlite":
                    log(f"{d}: slow-query isolation...")
                    ours["isolation"] = scenarios.isolation(server, svc, min(args.seconds, 5.0), start_id=args.start_id)
            except Exception as exc:  # noqa: BLE001 - keep the other databases' results
                server.keep = True
                log(f"  {d}: FAILED: {type(exc).__name__}: {exc} (server log kept: {server.log_path})")
                ours["error"] = f"{type(exc).__name__}: {exc}"
        if args.profile and args.profile_db in urls:
            log(f"profiling the worker under the c16 {args.profile_db} load...")
            results["profile"] = scenarios.profile(server, SERVICE[args.profile_db], args.seconds, RESULTS_DIR,
                                                  stamp, start_id=args.start_id)
            results["profile"]["db"] = args.profile_db
        results["server"]["final_rss_mb"] = server.rss.current_kb() / 1024
        results["server"]["worker_hwm_mb"] = server.worker_hwm_kb() / 1024
    finally:
        server.stop()

    original = (selection or {}).get("running", {}).get("executable")
    if original and original != sys.executable:
        # The interpreter was switched (bench/interpreter.py): the headline call served by the
        # one the harness was started with too, so the report shows what the switch is worth.
        d = "postgresql" if "postgresql" in urls else next(iter(urls))
        c = 16 if 16 in args.conc else max(args.conc)
        log(f"{d}: the c{c} 10-row call served by the starting interpreter ({original})...")
        results["running_interpreter"] = dict(scenarios.served_by(
            lambda: start_server([d], original), SERVICE[d], args.seconds, args.start_id, connections=c),
            python=original, db=d, connections=c)

    if args.peers:
        if "postgresql" in urls:
            from bench import peers
            log("peer: MCP Toolbox on the same PostgreSQL query...")
            results["peers"] = peers.run_toolbox(args.seconds, args.conc, args.size_list, args.start_id)
        else:
            results["peers"] = {"skipped": "--peers needs PostgreSQL in --db"}
    results["machine"]["loadavg_end"] = loadavg()
    return results


# ---------------------------------------------------------------------------- printing
def _get(table: dict, key):
    """``table[key]`` whether the run's keys are ints or (read back from JSON) strings."""
    return table.get(key) or table.get(str(key)) or {}


def _f(v, fmt="{:.0f}"):
    return "-" if v is None else fmt.format(v)


def _ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}"


def report(res: dict) -> str:
    m = res["machine"]
    lines = [f"mcp-flask benchmark {res['stamp']}: {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']} GiB, "
             f"Python {m['python']}, load average {m['loadavg']} -> {m.get('loadavg_end', '?')}",
             f"settings: {res['settings']['rows']} rows, {res['settings']['seconds']:.0f} s per point, "
             f"{res['settings']['workers']} worker(s); 10-row call: get_table_data "
             f"{json.dumps(res['settings']['small_call'])}"]
    lines += interpreter_lines(res) + [""]
    if res.get("ceiling"):
        lines.append("Load generator + server ceiling on trivial requests:")
        for name, r in res["ceiling"].items():
            lines.append(f"  {name:<12} {r['calls_s']:>8.0f} calls/s  p50 {r['p50_ms']:.2f} ms  "
                         f"p99 {r['p99_ms']:.2f} ms  errors {r['errors']}  ({r.get('loadgen')})")
        lines.append("")
    lines.append("10-row get_table_data: ours vs the raw driver in-process (floor); ratio = ours / floor+json calls/s; "
                 "cpu µs = worker CPU time per call")
    lines.append(f"{'db':<11}{'conns':>5} | {'ours/s':>7} {'p50':>6} {'p99':>6} {'err':>4} {'cpu µs':>6} | "
                 f"{'raw/s':>7} {'json/s':>7} {'orjson/s':>8} {'json p99':>8} | {'ours/json':>9}")
    for d, r in res["databases"].items():
        if "skipped" in r:
            lines.append(f"{d:<11} skipped: {r['skipped']}")
            continue
        small = r["ours"].get("small", {})
        fl = r["floor"].get("small", {})
        for c in res["settings"]["concurrency"]:
            o = _get(small, c)
            f = _get(fl, c)
            lines.append(
                f"{d:<11}{c:>5} | {_f(o.get('calls_s')):>7} {_f(o.get('p50_ms'), '{:.2f}'):>6} "
                f"{_f(o.get('p99_ms'), '{:.2f}'):>6} {_f(o.get('errors')):>4} {_f(o.get('cpu_us_per_call')):>6} | "
                f"{_f(f.get('raw', {}).get('calls_s')):>7} {_f(f.get('json', {}).get('calls_s')):>7} "
                f"{_f(f.get('orjson', {}).get('calls_s')):>8} {_f(f.get('json', {}).get('p99_ms'), '{:.2f}'):>8} | "
                f"{_ratio(o.get('calls_s'), f.get('json', {}).get('calls_s')):>9}")
        stateless = r["ours"].get("small_stateless")
        if stateless and "skipped" in stateless:
            lines.append(f"{d:<11} stateless skipped: {stateless['skipped']}")
        elif stateless:
            for c in res["settings"]["concurrency"]:
                o = _get(stateless, c)
                f = _get(fl, c)
                lines.append(
                    f"{d[:6] + ' (sl)':<11}{c:>5} | {_f(o.get('calls_s')):>7} {_f(o.get('p50_ms'), '{:.2f}'):>6} "
                    f"{_f(o.get('p99_ms'), '{:.2f}'):>6} {_f(o.get('errors')):>4} {_f(o.get('cpu_us_per_call')):>6} | {'':>7} {'':>7} {'':>8} {'':>8} | "
                    f"{_ratio(o.get('calls_s'), f.get('json', {}).get('calls_s')):>9}")
        if "error" in r["ours"]:
            lines.append(f"{d:<11} ERROR: {r['ours']['error']}")
    lines += ["", "Large fetches (one call, median of 3; RSS = server process tree, sampled every 20 ms); "
                  "ratio = ours / (raw + json.dumps)"]
    lines.append(f"{'db':<11}{'rows':>7} | {'ours ms':>8} {'MB':>6} {'RSS+MB':>7} | {'raw ms':>7} "
                 f"{'+json ms':>8} {'+orjson':>8} | {'ours/json':>9} {'ours/orjson':>11}")
    for d, r in res["databases"].items():
        if "skipped" in r:
            continue
        large = r["ours"].get("large", {})
        fl = r["floor"].get("large", {})
        for n in res["settings"]["sizes"]:
            o = _get(large, n)
            f = _get(fl, n)
            lines.append(
                f"{d:<11}{n:>7} | {_f(o.get('ms'), '{:.1f}'):>8} {_f(o.get('bytes') and o['bytes'] / 1e6, '{:.2f}'):>6} "
                f"{_f(o.get('rss_growth_mb'), '{:.1f}'):>7} | {_f(f.get('raw', {}).get('ms'), '{:.1f}'):>7} "
                f"{_f(f.get('json', {}).get('ms'), '{:.1f}'):>8} {_f(f.get('orjson', {}).get('ms'), '{:.1f}'):>8} | "
                f"{_ratio(o.get('ms'), f.get('json', {}).get('ms')):>9} "
                f"{_ratio(o.get('ms'), f.get('orjson', {}).get('ms')):>11}")
        cc = r["ours"].get("concurrent_10k")
        if cc:
            lines.append(f"{d:<11} 16 concurrent 10k-row calls: RSS {cc['rss_before_mb']:.0f} -> "
                         f"{cc['rss_peak_mb']:.0f} MB (+{cc['rss_growth_mb']:.1f}), slowest "
                         f"{_f(cc['wall_ms'])} ms, errors {cc['errors']}")
    iso = [(d, r["ours"]["isolation"]) for d, r in res["databases"].items()
           if "skipped" not in r and "isolation" in r.get("ours", {})]
    if iso:
        lines += ["", "Slow-query isolation: p99 of 10-row calls at c16, idle vs with 5 slow calls in flight"]
        for d, i in iso:
            if "skipped" in i:
                lines.append(f"  {d}: skipped: {i['skipped']}")
                continue
            lines.append(f"  {d}: idle p99 {i['idle']['p99_ms']:.2f} ms ({i['idle']['calls_s']:.0f}/s) -> "
                         f"{i['with_slow']['p99_ms']:.2f} ms ({i['with_slow']['calls_s']:.0f}/s): x{_f(i['p99_ratio'], '{:.2f}')}; "
                         f"slow call alone {i['slow_alone_ms']:.0f} ms, {i['slow_calls_ok']}/{i['slow_calls_completed']} ok "
                         f"[{i['slow_call']}]")
    if res.get("peers"):
        lines += ["", "Peer: Google MCP Toolbox (same query, same wrk script, stateless)"]
        p = res["peers"]
        if "skipped" in p:
            lines.append(f"  skipped: {p['skipped']}")
        else:
            for c, r in p.get("small", {}).items():
                lines.append(f"  c{c}: {r['calls_s']:.0f} calls/s p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} "
                             f"errors {r['errors']}")
            for n, r in p.get("large", {}).items():
                lines.append(f"  {n} rows: {r['ms']:.1f} ms, {r['bytes'] / 1e6:.2f} MB")
    lines += _cpu_split_lines(res)
    lines += target_lines(res)
    prof = res.get("profile")
    if prof:
        lines += ["", f"Profile of the worker under the c16 {prof.get('db', 'postgresql')} load (py-spy):"]
        if "skipped" in prof:
            lines.append(f"  skipped: {prof['skipped']}")
        else:
            lines.append(f"  {prof['samples']} samples at {prof['load']['calls_s']:.0f} calls/s; raw stacks "
                         f"{prof['raw']}; flame graph {prof.get('svg')}")
            lines.append("  inclusive % (top):")
            lines += [f"    {pct:5.1f}  {f}" for f, pct in prof["inclusive"][:25]]
            lines.append("  self % (top):")
            lines += [f"    {pct:5.1f}  {f}" for f, pct in prof["self"][:20]]
    srv = res.get("server")
    if srv:
        lines += ["", f"server: {srv['workers']} {srv.get('worker_class', 'gevent')} worker(s), pool {srv['pool_size']}, idle RSS "
                      f"{srv['idle_rss_mb']:.0f} MB, final {srv.get('final_rss_mb', 0):.0f} MB, worker VmHWM "
                      f"{srv.get('worker_hwm_mb', 0):.0f} MB"]
    return "\n".join(lines)


def _cpu_split_lines(res: dict) -> list[str]:
    """CPU per call at 16 connections (or the most measured), by process: the server, the
    database servers, the load generator, and the whole machine (what sets calls/s on a
    shared 2-core box)."""
    measured = [int(c) for c in res["settings"]["concurrency"]]
    conns = 16 if 16 in measured else max(measured)
    rows = []
    for d, r in res["databases"].items():
        if "skipped" in r:
            continue
        small = r["ours"].get("small", {})
        o = _get(small, conns)
        if o.get("cpu_split_us"):
            rows.append((d, o["calls_s"], o["cpu_split_us"]))
    peer = (res.get("peers") or {}).get("small", {})
    p = _get(peer, conns)
    if p.get("cpu_split_us"):
        rows.append(("Toolbox (PG)", p["calls_s"], p["cpu_split_us"]))
    if not rows:
        return []
    out = ["", f"CPU per call at c{conns}, µs (server = the workers, or Toolbox; database = its server "
               f"processes; loadgen = wrk; machine = all busy CPU / calls)",
           f"{'':<14}{'calls/s':>8} {'server':>7} {'database':>9} {'loadgen':>8} {'machine':>8}"]
    for name, calls, c in rows:
        out.append(f"{name:<14}{calls:>8.0f} {_f(c.get('server')):>7} {_f(c.get('database')):>9} "
                   f"{_f(c.get('loadgen')):>8} {_f(c.get('busy')):>8}")
    return out


def interpreter_lines(res: dict) -> list[str]:
    """Which interpreter ran the benchmark and why; when it is not the one the harness was
    started with, that one's headline figure (c16 PostgreSQL when measured) beside this run's
    (bench/interpreter.py)."""
    sel = res.get("interpreter")
    if not sel:
        return []
    base, running = sel["base"], sel["running"]
    out = [f"interpreter: Python {interpreter.describe(base)}"
           + ("" if base.get("executable") == running.get("executable")
              else f", instead of the starting {interpreter.describe(running)}") + f": {sel['reason']}"]
    alt = res.get("running_interpreter")
    if alt:
        d, c = alt["db"], alt["connections"]
        if "error" in alt:
            out.append(f"  the starting interpreter's c{c} {d} point failed: {alt['error']}")
        else:
            theirs = _get(alt["small"], c)
            ours = _get(res["databases"].get(d, {}).get("ours", {}).get("small", {}), c)
            out.append(f"  the same c{c} {d} call served by the starting interpreter: "
                       f"{theirs.get('calls_s', 0):,.0f} calls/s, p99 {theirs.get('p99_ms', 0):.2f} ms, worker "
                       f"cpu {_f(theirs.get('cpu_us_per_call'))} µs/call (this run's: "
                       f"{ours.get('calls_s', 0):,.0f} calls/s, {_f(ours.get('cpu_us_per_call'))} µs/call)")
    return out


def _verdict(ok) -> str:
    return "not measured" if ok is None else "met" if ok else "NOT MET"


def target_lines(res: dict) -> list[str]:
    """Issue 8's targets, each with what this run measured and whether it is met.

    Only what the run measured is judged: a target whose scenario did not run (no
    ``--peers``, a size below 10,000 rows, ``--no-isolation``) says "not measured".
    """
    dbs = {d: r for d, r in res["databases"].items() if "skipped" not in r}
    out = ["", "Targets (issue 8), judged on this run:"]
    pg = dbs.get("postgresql", {}).get("ours", {})
    ours16 = _get(pg.get("small", {}), 16)
    peer16 = _get((res.get("peers") or {}).get("small", {}), 16)
    if ours16.get("calls_s") and peer16.get("calls_s"):
        ok = ours16["calls_s"] >= peer16["calls_s"]
        out.append(f"  PostgreSQL 10-row call at c16 >= MCP Toolbox's calls/s: {ours16['calls_s']:,.0f} vs "
                   f"{peer16['calls_s']:,.0f} ({ours16['calls_s'] / peer16['calls_s']:.2f}x): {_verdict(ok)}")
    else:
        out.append(f"  PostgreSQL 10-row call at c16 >= MCP Toolbox's calls/s: {_verdict(None)} (--peers)")
    if ours16.get("calls_s"):
        ok = ours16["p99_ms"] < 25 and ours16["errors"] == 0
        out.append(f"  PostgreSQL c16 p99 < 25 ms with no errors: {ours16['p99_ms']:.2f} ms, "
                   f"{ours16['errors']} errors: {_verdict(ok)}")
    for d, r in dbs.items():
        o = _get(r["ours"].get("large", {}), 10000)
        f = _get(r["floor"].get("large", {}), 10000).get("json", {})
        if o.get("ms") and f.get("ms"):
            out.append(f"  {d}: 10,000 rows faster than the raw driver + json.dumps: {o['ms']:.1f} vs "
                       f"{f['ms']:.1f} ms ({o['ms'] / f['ms']:.2f}x): {_verdict(o['ms'] < f['ms'])}")
        big = _get(r["ours"].get("large", {}), 100000)
        if "rss_growth_mb" in big:
            out.append(f"  {d}: one 100,000-row call grows the server's RSS < 30 MB: "
                       f"+{big['rss_growth_mb']:.1f} MB: {_verdict(big['rss_growth_mb'] < 30)}")
        cc = r["ours"].get("concurrent_10k")
        if cc:
            ok = cc["rss_growth_mb"] < 100 and cc["errors"] == 0
            out.append(f"  {d}: 16 concurrent 10,000-row calls grow it < 100 MB: "
                       f"+{cc['rss_growth_mb']:.1f} MB, {cc['errors']} errors: {_verdict(ok)}")
        iso = r["ours"].get("isolation")
        if iso and "skipped" not in iso:
            ok = iso["p99_ratio"] < 2 and iso["slow_calls_ok"] == iso["slow_calls_completed"]
            out.append(f"  {d}: c16 p99 with five 2-second queries in flight < 2x idle: "
                       f"x{iso['p99_ratio']:.2f}: {_verdict(ok)}")
    return out


def interpreter_for(args, argv) -> dict:
    """This run's interpreter selection (bench/interpreter.py).  When another interpreter was
    chosen and its venv is ready, the harness re-executes itself under it and this does not
    return; the re-run reads the selection back from the environment."""
    if interpreter.ENV_MARK in os.environ:
        return json.loads(os.environ[interpreter.ENV_MARK])
    selection = interpreter.select(args.python)
    if selection["base"] is selection["running"]:
        return selection
    try:
        python = interpreter.venv_python(selection["base"], log)
    except Exception as exc:  # noqa: BLE001 - no venv (no pip, no index): measure where we are
        log(f"interpreter: cannot prepare {interpreter.describe(selection['base'])}: {exc}; staying on the running one")
        return dict(selection, base=selection["running"],
                    reason=f"{selection['reason']}, but its venv failed: {str(exc)[:200]}")
    log(f"interpreter: {interpreter.describe(selection['base'])}, not the running "
        f"{interpreter.describe(selection['running'])}: {selection['reason']}; re-running under {python}")
    env = dict(os.environ, **{interpreter.ENV_MARK: json.dumps(selection)})
    # The starting environment's tools (py-spy for --profile) stay reachable, after the rest.
    env["PATH"] = os.pathsep.join(filter(None, [env.get("PATH"), os.path.dirname(sys.executable)]))
    os.execve(python, [python, os.path.abspath(__file__), *argv], env)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    selection = interpreter_for(args, argv)
    res = run(args, selection)
    path = args.output or os.path.join(RESULTS_DIR, f"{res['stamp']}.json")
    with open(path, "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    print(report(res))
    print(f"\nresults: {path}")
    failed = [d for d, r in res["databases"].items() if "error" in r.get("ours", {}) or "skipped" in r]
    if failed:
        print(f"FAILED: {', '.join(failed)} (see above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

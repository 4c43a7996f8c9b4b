"""MCP `search_binary` round-trip latency over one stdio session, beside `indexer search` as a process.

    .venv/bin/python bench/mcp_latency.py [DATA_DIR]

`make bench` runs `measure` as its measurement 10. Alone, this script indexes the bundles into a
temporary data directory when none is given, then times, in the same run: `indexer search NAME`
as a process (what a shell user waits for) and `search_binary` calls from the SDK's own client
(`mcp.ClientSession` over `mcp.client.stdio.stdio_client`) to one `indexer mcp` process: the
round trip an assistant waits for once the server runs (JSON-RPC both ways, argument validation,
the query, the typed result and the client's check of it against the output schema).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"
BIN = Path(sys.executable).parent
INDEXER = str(BIN / "indexer") if (BIN / "indexer").exists() else (shutil.which("indexer") or "indexer")
NAMES = [
    "cmd.exe",
    "powershell.exe",
    "rundll32.exe",
    "certutil.exe",
    "psr.exe",
    "dfsrs.exe",
    "vssvc.exe",
    "notabinary.exe",
]


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))]


async def _session_times(data_dir: Path, names: Sequence[str], rounds: int) -> dict[str, Any]:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=INDEXER, args=["mcp", "--data-dir", str(data_dir)])
    t0 = time.perf_counter()
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            await session.list_tools()  # the client caches output schemas, as an assistant's does
            startup = time.perf_counter() - t0
            for name in names:  # warm: the reader opened, each binary's document read once
                await session.call_tool("search_binary", {"name": name})
            times: list[tuple[float, str]] = []
            errors = 0
            for _ in range(rounds):
                for name in names:
                    start = time.perf_counter()
                    result = await session.call_tool("search_binary", {"name": name})
                    times.append((time.perf_counter() - start, name))
                    errors += bool(result.is_error)
    return {"startup": startup, "times": times, "errors": errors}


def measure(data_dir: Path, names: Sequence[str] = NAMES, rounds: int = 25) -> dict[str, Any]:
    """Round trips of `search_binary` (default arguments) over one stdio session: p50, p90, p99, max
    in seconds, the slowest name, and the session's start-up (spawn, initialize, list_tools)."""
    import anyio

    data = anyio.run(_session_times, data_dir, names, rounds)
    values = sorted(t for t, _ in data["times"])
    by_name = {n: statistics.median(t for t, m in data["times"] if m == n) for n in names}
    return {
        "calls": len(values),
        "errors": data["errors"],
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": values[-1],
        "startup": data["startup"],
        "by_name": by_name,
    }


def cli_search(data_dir: Path, names: Sequence[str] = NAMES, runs: int = 5) -> dict[str, float]:
    """Median wall time of `indexer search NAME --json` as a process, per name."""
    out: dict[str, float] = {}
    for name in names:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(
                [INDEXER, "search", name, "--json", "--data-dir", str(data_dir)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times)
    return out


def main(argv: list[str]) -> int:
    scratch = None
    if argv:
        data_dir = Path(argv[0])
    else:
        scratch = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
        data_dir = scratch / "data"
        subprocess.run(
            [
                INDEXER,
                "refresh",
                "--quiet",
                "--data-dir",
                str(data_dir),
                "--sigma-url",
                str(CORPORA / "sigma.bundle"),
                "--lolbas-url",
                str(CORPORA / "lolbas.bundle"),
            ],
            check=True,
        )
    try:
        cli = cli_search(data_dir)
        mcp = measure(data_dir)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    print(f"indexer search NAME --json (process, median per name): {', '.join(f'{n} {ms(t)}' for n, t in cli.items())}")
    print(f"  over the names: median {ms(statistics.median(cli.values()))}, max {ms(max(cli.values()))}")
    print(
        f"MCP search_binary over stdio, {mcp['calls']} calls ({mcp['errors']} errors): p50 {ms(mcp['p50'])}, "
        f"p90 {ms(mcp['p90'])}, p99 {ms(mcp['p99'])}, max {ms(mcp['max'])}; "
        f"session start-up {ms(mcp['startup'])}"
    )
    print(f"  median per name: {', '.join(f'{n} {ms(t)}' for n, t in mcp['by_name'].items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Cold start: seconds from ``recap-studio serve`` to the first HTTP answer, against a bare
two-tab Gradio app started the same way on the same machine, in the same run.

Why a ratio: Gradio itself takes several seconds to import on a small machine, which no studio
change can remove; what the studio adds on top is what we can cut (heavy libraries imported
for pages nobody opened yet). The goal is a studio start within 1.3x the bare app.

    .venv/bin/python bench/cold_start.py [--runs 3]

Each run starts a fresh process (so nothing is cached in memory beyond the OS page cache,
which both sides share: the first, warm-up round of each is not counted), polls the port until
it answers, then stops it. Runs of the apps alternate so a noisy neighbour hits all alike.

The studio is started as users start it, through the ``recap-studio`` console script, which
pauses Python's garbage collector until the server answers (``studio/startup.py``). That also
speeds up Gradio's own import, which the bare app pays in full; so the bench also starts the
bare app with the same pause and prints the ratio against it: that one is the studio's own
overhead alone.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BARE_APP = """
import sys
import gradio as gr
with gr.Blocks(title="bare") as demo:
    with gr.Tabs():
        with gr.Tab("One"):
            gr.Textbox(label="a")
        with gr.Tab("Two"):
            gr.Button("b")
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), ssr_mode=False, quiet=True)
"""
#: the same app with the studio's start-up collector pause (studio/startup.py)
BARE_APP_GC_PAUSED = (
    "import gc\ngc.disable()\n"
    + BARE_APP.replace("quiet=True)", "quiet=True, prevent_thread_lock=True)")
    + "gc.collect()\ngc.freeze()\ngc.enable()\ndemo.block_thread()\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_answer_s(command: list[str], port: int, env: dict[str, str], timeout: float = 180.0) -> float:
    """Start ``command``, return seconds until http://127.0.0.1:port/ answers (any status), stop it."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited with {proc.returncode} before answering")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
                return time.perf_counter() - started
            except urllib.error.HTTPError:
                return time.perf_counter() - started  # an answer, even a 401
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"{command[:3]} did not answer within {timeout:.0f} s")
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each app (after one warm-up each)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        subprocess.run(
            [sys.executable, "-m", "studio.cli", "--home", str(home), "datasets"],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        bare_file = Path(tmp) / "bare_app.py"
        bare_file.write_text(BARE_APP, encoding="utf-8")
        paused_file = Path(tmp) / "bare_app_gc_paused.py"
        paused_file.write_text(BARE_APP_GC_PAUSED, encoding="utf-8")
        script = Path(sys.executable).parent / "recap-studio"  # the console script users run

        def studio(port: int) -> list[str]:
            return [str(script), "--home", str(home), "serve", "--port", str(port)]

        def bare(port: int) -> list[str]:
            return [sys.executable, str(bare_file), str(port)]

        def bare_paused(port: int) -> list[str]:
            return [sys.executable, str(paused_file), str(port)]

        apps = {"studio": studio, "bare": bare, "bare, collector paused": bare_paused}
        times: dict[str, list[float]] = {name: [] for name in apps}
        for round_ in range(args.runs + 1):
            for name, make in apps.items():
                port = free_port()
                seconds = first_answer_s(make(port), port, env)
                if round_:  # round 0 warms the OS page cache for all
                    times[name].append(seconds)
                print(f"round {round_} {name}: {seconds:.2f} s{'' if round_ else ' (warm-up, not counted)'}")
    med = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"recap-studio serve: {', '.join(f'{t:.2f}' for t in times['studio'])} s (median {med['studio']:.2f})"
    )
    print(f"bare two-tab Gradio: {', '.join(f'{t:.2f}' for t in times['bare'])} s (median {med['bare']:.2f})")
    paused = times["bare, collector paused"]
    print(
        f"bare, collector paused: {', '.join(f'{t:.2f}' for t in paused)} s (median {med['bare, collector paused']:.2f})"
    )
    print(f"ratio studio / bare: {med['studio'] / med['bare']:.2f}x (goal <= 1.3x)")
    print(
        f"ratio studio / bare with the same collector pause: {med['studio'] / med['bare, collector paused']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

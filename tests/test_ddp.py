"""Distributed training: a real `torchrun --nproc_per_node 2` on CPU (gloo backend)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from test_data import LINE, write_shards

from models.checkpoint import load_model
from models.specs import TrainJob, TrainSpec
from models.train import LOCK_FILE, WANTED_FILE, output_lock

REPO = Path(__file__).resolve().parents[1]


def _torchrun(
    tmp_path: Path,
    out: Path,
    init_from: Path | None = None,
    chars: str = "0123",
    processes: int = 2,
) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m models.train`` of a tiny line model writing ``out``
    (``processes``: another count)."""
    shards = write_shards(tmp_path / "shards", "train", 2, 16, "0123", LINE, seed=1)
    val = write_shards(tmp_path / "shards", "val", 1, 8, "0123", LINE, seed=2)
    charset = tmp_path / f"charset-{chars}.txt"
    charset.write_text("".join(f"{c}\n" for c in chars), encoding="utf-8")
    job = TrainJob(
        experiment="ddp",
        task="line",
        model="crnn_vgg",
        model_kwargs={"width": 0.125, "hidden": 16},
        train=TrainSpec(
            steps=6,
            batch_size=4,
            warmup_steps=1,
            val_every=3,
            val_batches=1,
            checkpoint_every=3,
            log_every=3,
            num_workers=0,
            shuffle_buffer=8,
            init_from=str(init_from) if init_from else None,
        ),
        seed=5,
        device="cpu",
        charset=str(charset),
        train_shards=tuple(shards),
        val_shards=tuple(val),
        out_dir=str(out),
    )
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(job.to_dict()))
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node",
        str(processes),
        "-m",
        "models.train",
        "--spec",
        f"@{spec}",
        "--threads",
        "1",
    ]
    # torchrun's agent keeps its logs in a folder of its own under TMPDIR: the test's, not /tmp.
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(tmp_path),
    }
    return subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=170, check=False
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_two_ranks(job_file: Path) -> list[subprocess.Popen]:
    """Ranks 0 and 1 of ``models.train --spec @job_file``, started as torchrun starts them (its
    environment, by hand: no agent), on a port free when chosen; their output merged."""
    port = _free_port()
    return [
        subprocess.Popen(
            [sys.executable, "-m", "models.train", "--spec", f"@{job_file}"],
            cwd=REPO,
            env={
                **os.environ,
                "PYTHONPATH": str(REPO),
                "OMP_NUM_THREADS": "1",
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]


def _two_ranks_by_hand(job_file: Path) -> tuple[list[subprocess.Popen], list[str]]:
    """Run ranks 0 and 1 of ``models.train --spec @job_file`` as torchrun would, without its
    agent, until both exit; their processes and output. The port is free when chosen but can
    be taken before rank 0 listens on it (another test's process, say): rank 0 then stops at
    once, "address already in use", and the pair is started again on another port."""
    attempts = 3
    for attempt in range(attempts):
        ranks = _start_two_ranks(job_file)
        try:
            first = ranks[0].communicate(timeout=150)[0]
            if "address already in use" in first and attempt + 1 < attempts:
                continue  # rank 1, waiting for a store that never came, is killed below
            return ranks, [first, ranks[1].communicate(timeout=150)[0]]
        finally:
            for p in ranks:
                p.kill()
                p.wait()
    raise AssertionError("unreachable")


@pytest.mark.slow
def test_torchrun_two_processes_train_and_rank0_writes_once(tmp_path):
    out = tmp_path / "out"
    proc = _torchrun(tmp_path, out)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    for rank in (0, 1):
        assert f"rank {rank}/2 joined the gloo process group" in log, log
        assert f"on cpu (rank {rank}/2)" in log, log
    assert log.count("wrote ") == 1, log  # rank 0 alone writes the outputs
    info = json.loads((out / "train.json").read_text())
    assert info["world_size"] == 2 and info["steps"] == 6
    checkpoints = sorted((out / "resume").rglob("*.pt"))
    assert len(checkpoints) == 1, checkpoints
    assert not list(out.rglob("*.tmp"))
    assert (out / LOCK_FILE).read_text() == ""  # rank 0 held it, and released it at the end
    model, meta = load_model(out / "model.pt")
    assert meta.step == 6
    assert all(torch.isfinite(p).all() for p in model.parameters())

    # Rank 0 draws the batches and dropout of a one-process run of the job (both are seeded by
    # seed, rank and step) from the same initial weights: only the gradients of rank 1, which
    # DDP averages in at every step, set the two runs' weights apart, by far more than rounding.
    alone = tmp_path / "alone"
    proc = _torchrun(tmp_path, alone, processes=1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    one, _ = load_model(alone / "model.pt")
    apart = max(
        float((a - b).abs().max())
        for a, b in zip(model.state_dict().values(), one.state_dict().values(), strict=True)
        if a.is_floating_point()
    )
    assert apart > 1e-4

    # Fine-tuned from it under torchrun, over a reordered charset with a new character.
    tuned = tmp_path / "tuned"
    proc = _torchrun(tmp_path, tuned, init_from=out / "model.pt", chars="3210x")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    info = json.loads((tuned / "train.json").read_text())
    assert info["world_size"] == 2 and info["steps"] == 6
    assert (info["init_from"]["classes_kept"], info["init_from"]["classes_new"]) == (4, 1)
    assert log.count("4 of 5 characters keep their output rows") == 2, log  # on each rank


@pytest.mark.slow
def test_a_second_torchrun_of_a_locked_output_stops_every_rank(tmp_path):
    out = tmp_path / "out"
    # A rank left waiting in a collective would wait past _torchrun's timeout, which fails the
    # test: no clock of its own is needed here.
    with output_lock(out):  # held as the first training's rank 0 holds it
        proc = _torchrun(tmp_path, out)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log
    assert f"{out} is being trained by another process (pid {os.getpid()} on " in log, log
    # Rank 1 learns it from rank 0 and stops as well, with a message, not a traceback from a
    # collective rank 0 left (unless torchrun's SIGTERM, on rank 0's exit, stops it first).
    assert "models/train.py" not in log, log
    # nothing trained or written but rank 0's wish (its run key, for the holder)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, WANTED_FILE]


@pytest.mark.slow
def test_a_one_process_rerun_writes_a_finished_torchrun_run_and_keeps_an_unfinished_one(
    tmp_path,
):
    """Snakemake reruns a train job on one process (after a config round trip, say): the same
    job finished under torchrun is its output, and an unfinished one is kept, with a way on."""
    out = tmp_path / "out"
    proc = _torchrun(tmp_path, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trained, _ = load_model(out / "model.pt")
    [state] = (out / "resume").iterdir()
    info = json.loads((state / "run.json").read_text())
    assert info["world_size"] == 2 and info["finished"] and info["step"] == 6
    for name in ("model.pt", "train.json", "history.csv"):  # as Snakemake removes them
        (out / name).unlink()

    def one_process() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "models.train", "--spec", f"@{tmp_path / 'job.json'}"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=170,
        )

    proc = one_process()
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert f"run {state.name}, this job on 2 processes, finished at step 6" in log, log
    summary = json.loads((out / "train.json").read_text())
    assert (summary["world_size"], summary["resumed_from"], summary["steps"]) == (2, 6, 6)
    assert summary["run_hash"] == state.name
    written, _ = load_model(out / "model.pt")
    for a, b in zip(trained.state_dict().values(), written.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [p.name for p in (out / "resume").iterdir()] == [state.name]

    # The same run stopped half way: not continued on one process, and not deleted.
    (state / "run.json").write_text(json.dumps({**info, "finished": False, "step": 3}))
    proc = one_process()
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log
    assert f"{state} holds an unfinished run of this job on 2 processes (step 3 of 6)" in log
    assert "torchrun --nproc_per_node 2" in log and "Traceback" not in log
    assert (state / "last.pt").exists()

    # The other way round: a one-process run stopped half way stops a torchrun run too.
    info_one = {**info, "world_size": 1, "finished": False, "step": 3}
    one = out / "resume" / "0123456789abcdef"
    state.rename(one)
    (one / "run.json").write_text(json.dumps({**info_one, "run_hash": one.name}))
    proc = _torchrun(tmp_path, out)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log
    assert f"{one} holds an unfinished run of this job on 1 process (step 3 of 6)" in log, log
    assert "continue it with one process (snakemake" in log
    assert (one / "last.pt").exists()
    # Finished, it is no torchrun run's output: torchrun trains the job on its own count.
    (one / "run.json").write_text(json.dumps({**info_one, "finished": True, "step": 6}))
    proc = _torchrun(tmp_path, out)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert json.loads((out / "train.json").read_text())["resumed_from"] == 0
    # Its state is the torchrun run's own, under the torchrun key, finished; the one-process
    # run's state, of another process count, is stale once that run has its own.
    assert [p.name for p in (out / "resume").iterdir()] == [state.name]
    rerun = json.loads((state / "run.json").read_text())
    assert (rerun["world_size"], rerun["finished"], rerun["step"]) == (2, True, 6), rerun
    assert (state / "last.pt").exists()
    assert not one.exists()
    assert f"removing stale resume state {one}" in log, log


@pytest.mark.slow
def test_when_rank0_fails_alone_every_rank_stops(tmp_path):
    """Rank 0 alone reads the validation shards, validates and writes. When that fails (here a
    damaged val shard), the other ranks stop with it, with a message, instead of waiting in the
    next collective: torchrun stops them on rank 0's node, but not on other nodes, where NCCL
    waits until its timeout (gloo finds the closed connection and raises a traceback). The two
    ranks run here without torchrun's agent (the environment it sets, by hand)."""
    _torchrun(tmp_path, tmp_path / "first")  # writes the shards and job.json
    job = json.loads((tmp_path / "job.json").read_text())
    [val] = job["val_shards"]
    data = Path(val).read_bytes()
    Path(val).write_bytes(data[: len(data) // 2])
    job["out_dir"] = str(tmp_path / "out")
    (tmp_path / "job.json").write_text(json.dumps(job))
    ranks, logs = _two_ranks_by_hand(tmp_path / "job.json")
    assert [p.returncode for p in ranks] == [1, 1], logs
    assert val in logs[0] and "Traceback" not in logs[0], logs[0]
    assert "rank 0 stopped while reading the validation shards" in logs[1], logs[1]
    assert "Traceback" not in logs[1], logs[1]


@pytest.mark.slow
def test_rank0_reads_every_training_label_for_all_ranks(tmp_path):
    """Under torchrun rank 0 alone reads the training labels before the first step, for every
    rank: a label the charset cannot encode stops rank 0 naming the samples, and the other rank
    with it (here a charset that lacks '3', which the shards' labels hold)."""
    _torchrun(tmp_path, tmp_path / "first")  # writes the shards and job.json
    job = json.loads((tmp_path / "job.json").read_text())
    charset = tmp_path / "charset-012.txt"
    charset.write_text("0\n1\n2\n", encoding="utf-8")
    job.update(charset=str(charset), out_dir=str(tmp_path / "out"))
    (tmp_path / "job.json").write_text(json.dumps(job))
    ranks, logs = _two_ranks_by_hand(tmp_path / "job.json")
    assert [p.returncode for p in ranks] == [1, 1], logs
    assert "training samples cannot be trained on" in logs[0] and "'3'" in logs[0], logs[0]
    assert "rank 0 stopped while reading the training labels" in logs[1], logs[1]
    assert "cannot be trained on" not in logs[1]  # rank 1 did not read them itself
    assert "Traceback" not in logs[0] + logs[1], logs


@pytest.mark.slow
def test_every_rank_stops_early_at_one_step_and_rank0_alone_says_so(tmp_path):
    """Early stopping is rank 0's validation, shared: every rank stops after the same step, and
    only rank 0 logs it (another rank's line would print over rank 0's progress bar)."""
    _torchrun(tmp_path, tmp_path / "first")  # writes the shards and job.json
    job = json.loads((tmp_path / "job.json").read_text())
    job["train"].update(steps=40, val_every=1, early_stop_patience=1, lr=0.05)
    job["out_dir"] = str(tmp_path / "out")
    (tmp_path / "job.json").write_text(json.dumps(job))
    ranks, logs = _two_ranks_by_hand(tmp_path / "job.json")
    assert [p.returncode for p in ranks] == [0, 0], logs
    assert "early stop at step" in logs[0] and "early stop" not in logs[1], logs
    info = json.loads((tmp_path / "out" / "train.json").read_text())
    assert info["stopped_early"] and info["steps"] < 40, info


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_every_rank_at_one_step_with_its_state_saved(tmp_path):
    """SIGTERM reaches the ranks at different moments (here rank 1 alone): each rank learns of
    it in the step's all-reduce, so all stop after the same step, rank 0 saves that step's
    state, and every rank exits 143 without waiting in a collective the others left."""
    import re
    import signal

    _torchrun(tmp_path, tmp_path / "first")  # writes the shards and job.json
    job = json.loads((tmp_path / "job.json").read_text())
    job["train"].update(steps=100_000, checkpoint_every=10_000, val_every=10_000, log_every=1)
    job["out_dir"] = str(tmp_path / "out")
    (tmp_path / "job.json").write_text(json.dumps(job))
    for attempt in range(3):
        ranks = _start_two_ranks(tmp_path / "job.json")
        # a log that never shows the step (a reworded line) fails the test, not waits for
        # 100,000 steps
        deadline = threading.Timer(300, lambda ranks=ranks: [p.kill() for p in ranks])
        deadline.start()
        try:
            lines = []
            for line in ranks[0].stdout:
                lines.append(line)
                if re.search(r"step [3-9]/100000", line):
                    deadline.cancel()  # the step came: the ranks save and stop in their time
                    ranks[1].send_signal(signal.SIGTERM)
                    break
            logs = ["".join(lines) + ranks[0].communicate(timeout=120)[0]]
            logs.append(ranks[1].communicate(timeout=120)[0])
        finally:
            deadline.cancel()
            for p in ranks:
                p.kill()
                p.wait()
        if "address already in use" in logs[0] and attempt < 2:
            continue
        break
    assert [p.returncode for p in ranks] == [143, 143], logs
    said = re.search(r"stopped by SIGTERM at step (\d+) of 100000", logs[0])
    assert said and "Traceback" not in logs[0] + logs[1], logs
    assert f"stopped by SIGTERM at step {said[1]} of 100000" in logs[1], logs[1]
    [state] = (tmp_path / "out" / "resume").iterdir()
    assert json.loads((state / "run.json").read_text())["step"] == int(said[1]) >= 3

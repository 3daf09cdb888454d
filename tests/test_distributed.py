"""Several processes with torch's own launcher and process groups: `torchrun` training of the functional head and
the sharded SOCO benchmark, with 2 CPU processes (Gloo), odd numbers of pairs and images, on a free port per run."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from correspondence import distributed
from correspondence.errors import DeviceError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], nproc: int = 2, timeout: int = 240) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node N -m correspondence.cli ARGS`` on a free port, one
    thread per process (so the numbers match a single-threaded reference exactly)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--nnodes", "1",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "correspondence.cli", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


# ---- helpers, in this process -----------------------------------------------------------------------------------

def test_padded_shards_give_every_rank_the_same_number_of_items():
    order = list(range(5))
    shards = [distributed.padded_shard(order, r, 2) for r in range(2)]
    assert [len(s) for s in shards] == [3, 3]
    assert sorted(shards[0] + shards[1]) == [0, 0, 1, 2, 3, 4]  # the tail is padded from the start
    assert distributed.padded_shard(order, 0, 1) == order
    assert [len(distributed.padded_shard([7], r, 3)) for r in range(3)] == [1, 1, 1]
    assert distributed.shard(order, 1, 2) == [1, 3]


def test_rank_share_gives_every_rank_the_same_number_of_pairs():
    from correspondence.functional.train import rank_share
    for n, world in ((5, 2), (50, 3), (2, 3), (9, 1)):
        shares = [rank_share(list(range(n)), r, world) for r in range(world)]
        assert len({len(s) for s in shares}) == 1 and len(shares[0]) == -(-n // world), (n, world)
        assert {i for s in shares for i in s} == set(range(n))
    assert rank_share(range(5), 0, 2) == [0, 2, 4] and rank_share(range(5), 1, 2) == [1, 3, 0]


def test_device_and_backend_per_rank(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.device_for_rank("cpu") == torch.device("cpu")
    assert distributed.backend_for("cpu") == "gloo" and distributed.backend_for("cuda:1") == "nccl"
    if torch.cuda.device_count() < 2:
        with pytest.raises(DeviceError, match="CUDA is not available|does not exist"):
            distributed.device_for_rank("cuda")
    else:
        assert distributed.device_for_rank("cuda") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match="cuda:LOCAL_RANK"):
        distributed.device_for_rank("cuda:0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    context = distributed.init("cpu")  # no torchrun: no process group, rank 0 of 1
    assert (context.rank, context.world_size, context.enabled) == (0, 1, False) and not distributed.is_initialized()
    assert distributed.all_reduce_sum([1.5, 2]) == [1.5, 2.0] and distributed.broadcast_object({"a": 1}) == {"a": 1}


def test_state_digest_sees_any_weight_change():
    layer = torch.nn.Linear(3, 2)
    before = distributed.state_digest(layer)
    assert before == distributed.state_digest({k: v.clone() for k, v in layer.state_dict().items()})
    with torch.no_grad():
        layer.bias[0] += 1e-6
    assert distributed.state_digest(layer) != before


# ---- torchrun, 2 CPU processes ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def five_pairs(tmp_path_factory):
    """A functional training split with an odd number of pairs (5)."""
    from correspondence.world.synth import SynthConfig, synth_functional
    root = tmp_path_factory.mktemp("functional5")
    synth_functional(SynthConfig(out=str(root), categories=("mug", "jug"), views=3, instances=2, size=64,
                                 train_fraction=1.0, seed=1, progress=False))
    index = json.loads((root / "index.json").read_text())
    index["splits"]["train"] = sorted(index["splits"]["train"])[:5]
    (root / "index.json").write_text(json.dumps(index))
    return root


def test_torchrun_training_on_two_cpu_ranks_keeps_identical_weights(five_pairs, tmp_path):
    from correspondence.functional.checkpoint import HeadCheckpoint
    out = tmp_path / "head"
    done = torchrun(["train", "functional", "--data", str(five_pairs), "--backbone", "test_vit_tiny",
                     "--random-weights", "--epochs", "2", "--batches-per-epoch", "3", "--batch-pairs", "3",
                     "--points", "16", "--image-size", "56", "--hidden", "32", "--text-encoder", "all-MiniLM-L6-v2",
                     "--device", "cpu", "--out", str(out)])
    assert done.stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    meta = json.loads(out.with_suffix(".json").read_text())
    record = meta["training"]["distributed"]
    assert record["world_size"] == 2 and record["backend"] == "gloo" and record["device"] == "cpu"
    digests = record["head_sha1_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]  # the DDP replicas ended identical
    checkpoint = HeadCheckpoint.load(out.with_suffix(".safetensors"))
    assert distributed.state_digest(checkpoint.head) == digests[0]
    history = meta["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    # a global batch of 3 pairs is padded to 4 and dealt out, 2 pairs a rank; 3 steps on both ranks
    assert all(h["steps"] == 3 and h["pairs"] == 3 * 4 for h in history)
    for suffix in (".loss.png", ".train_state.pt"):
        assert out.with_suffix(suffix).is_file()


@pytest.fixture(scope="module")
def soco_odd(tmp_path_factory):
    """A SOCO-layout set with an odd number of images (9) and of pairs (11)."""
    from correspondence.world.synth import SynthConfig, synth_soco
    root = tmp_path_factory.mktemp("soco_odd")
    counts = synth_soco(SynthConfig(out=str(root), categories=("car", "mug", "cup"), views=3, size=96,
                                    pairs_per_category=3, cross_pairs_per_group=2, seed=1, progress=False))
    assert counts["images"] % 2 == 1 and (counts["intra"] + counts["cross"]) % 2 == 1
    return root


def _comparable(path: Path) -> dict:
    record = json.loads(path.read_text())
    record.pop("timing")  # wall time, ranks
    record.pop("machine")  # thread count
    return record


def test_torchrun_soco_bench_on_two_cpu_ranks_equals_one_process(soco_odd, tmp_path):
    from correspondence.backbones import create_backbone
    from correspondence.benchmarks.soco.protocol import preset
    from correspondence.benchmarks.soco.run import SocoBenchConfig, run_soco_benchmark
    settings = preset("soco-798", tasks=("cc", "soc", "cross", "geo"), alphas=(0.1, 0.05, 0.02))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun rank runs
    try:
        single = run_soco_benchmark(SocoBenchConfig(str(soco_odd), str(tmp_path / "one"), progress=False,
                                                    four_choice=True), settings,
                                    create_backbone("test_vit_tiny", random_init=True))
    finally:
        torch.set_num_threads(threads)
    done = torchrun(["bench", "soco", "--root", str(soco_odd), "--backbone", "test_vit_tiny", "--random-weights",
                     "--four-choice", "--device", "cpu", "--out", str(tmp_path / "two")])
    assert done.stdout.count("wrote ") == 1
    one, two = _comparable(tmp_path / "one" / "results.json"), _comparable(tmp_path / "two" / "results.json")
    assert two == one
    timing = json.loads((tmp_path / "two" / "results.json").read_text())["timing"]
    assert timing["ranks"] == 2 and timing["images_encoded"] == single["timing"]["images_encoded"] == 9
    assert timing["cache_hits"] == single["timing"]["cache_hits"]
    assert one["summary"]["keypoints_evaluated"]["soc"] > 0


# ---- torchrun on 2 GPUs (NCCL); the gpu tier, skipped with the reason elsewhere ---------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (one per torchrun rank)")
def test_torchrun_on_two_gpus_trains_identical_replicas_and_benches_like_one_gpu(five_pairs, soco_odd, tmp_path):
    from correspondence.backbones import create_backbone
    from correspondence.benchmarks.soco.protocol import preset
    from correspondence.benchmarks.soco.run import SocoBenchConfig, run_soco_benchmark
    out = tmp_path / "head"
    torchrun(["train", "functional", "--data", str(five_pairs), "--backbone", "test_vit_tiny", "--random-weights",
              "--epochs", "2", "--batches-per-epoch", "3", "--batch-pairs", "2", "--points", "16", "--image-size", "56",
              "--hidden", "32", "--text-encoder", "all-MiniLM-L6-v2", "--device", "cuda", "--out", str(out)])
    record = json.loads(out.with_suffix(".json").read_text())["training"]["distributed"]
    assert record["backend"] == "nccl" and record["device"] == "cuda:0"
    assert len(set(record["head_sha1_per_rank"])) == 1 and len(record["head_sha1_per_rank"]) == 2
    settings = preset("soco-798", tasks=("cc", "soc", "cross", "geo"), alphas=(0.1, 0.05, 0.02))
    run_soco_benchmark(SocoBenchConfig(str(soco_odd), str(tmp_path / "one"), progress=False), settings,
                       create_backbone("test_vit_tiny", random_init=True), device="cuda")
    torchrun(["bench", "soco", "--root", str(soco_odd), "--backbone", "test_vit_tiny", "--random-weights",
              "--device", "cuda", "--out", str(tmp_path / "two")])
    one, two = _comparable(tmp_path / "one" / "results.json"), _comparable(tmp_path / "two" / "results.json")
    assert two["summary"] == one["summary"] and two["features"] == one["features"]

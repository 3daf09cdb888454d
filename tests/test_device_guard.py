"""CI has no GPU, so this guard keeps GPU paths honest: a tensor leaves torch only through
``correspondence.device.to_numpy``. A ``.numpy()`` call anywhere else in the package fails here, as does
``np.asarray`` / ``np.array`` applied directly to an expression that produces a tensor (``.index``, ``.score``,
``.features``, a ``torch.*`` call). Arrays that are not torch tensors (Open3D's) are listed with the reason."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from correspondence.device import resolve_device, to_numpy
from correspondence.errors import DeviceError

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("correspondence", "export", "soco_ros")
HELPER = REPO / "correspondence" / "device.py"
# (file, number of .numpy() calls, why they are not torch tensors)
NOT_TORCH = {
    "correspondence/world/render.py": (3, "Open3D raycasting tensors (o3d.core.Tensor), host memory"),
    "correspondence/world/objects.py": (2, "Open3D point sampling tensors (o3d.core.Tensor), host memory"),
}
TENSOR_ATTRIBUTES = {"index", "score", "features", "values", "indices"}


def package_files():
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def numpy_calls(tree: ast.AST) -> list[int]:
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "numpy" and not node.args]


def _produces_tensor(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute) and node.attr in TENSOR_ATTRIBUTES:
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        root = node.func
        while isinstance(root, ast.Attribute):
            root = root.value
        return isinstance(root, ast.Name) and root.id in ("torch", "F")
    return False


def asarray_on_tensors(tree: ast.AST) -> list[int]:
    hits = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("asarray", "array", "ascontiguousarray")
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "np"
                and node.args and _produces_tensor(node.args[0])):
            hits.append(node.lineno)
    return hits


def test_no_tensor_leaves_torch_except_through_to_numpy():
    offenders = []
    for path in package_files():
        if path == HELPER:
            continue
        relative = str(path.relative_to(REPO))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        calls = numpy_calls(tree)
        allowed = NOT_TORCH.get(relative, (0, ""))[0]
        if len(calls) != allowed:
            offenders.append(f"{relative}: .numpy() at lines {calls} (use correspondence.device.to_numpy)")
        offenders += [f"{relative}:{line}: np.asarray/np.array on a tensor (use to_numpy)"
                      for line in asarray_on_tensors(tree)]
    assert not offenders, "\n".join(offenders)


def test_the_guard_catches_what_it_is_for():
    bad = ast.parse("x = model(images)[0].numpy()\ny = np.asarray(nn.index)\nz = np.array(torch.ones(3))\n")
    assert numpy_calls(bad) == [1]
    assert asarray_on_tensors(bad) == [2, 3]
    fine = ast.parse("x = to_numpy(t)\ny = np.asarray(mask, bool)\n")
    assert numpy_calls(fine) == [] and asarray_on_tensors(fine) == []


def test_to_numpy_detaches_widens_and_passes_arrays_through():
    t = torch.ones(3, requires_grad=True) * 2
    out = to_numpy(t)
    assert isinstance(out, np.ndarray) and out.tolist() == [2.0, 2.0, 2.0]
    assert to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32
    assert to_numpy(torch.arange(3), np.float64).dtype == np.float64
    array = np.zeros(2)
    assert to_numpy(array) is array


def test_resolve_device_errors(monkeypatch):
    assert resolve_device(None) == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="not a torch device"):
        resolve_device("gpu0")
    with pytest.raises(DeviceError, match="not supported"):
        resolve_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="CUDA is not available on this machine"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    with pytest.raises(DeviceError, match=r"'cuda:3' does not exist on this machine; it has 1 CUDA device\(s\): "
                                          r"cuda:0 \(Fake GPU\)"):
        resolve_device("cuda:3")
    assert resolve_device("cuda") == torch.device("cuda", 0)


@pytest.mark.parametrize("argv, message", [
    (["match", "--demo", "d", "--demo-keypoints", "k", "--live", "l", "--device", "cuda"],
     "CUDA is not available on this machine"),
    (["match", "--demo", "d", "--demo-keypoints", "k", "--live", "l", "--cuda-graphs"],
     "--cuda-graphs needs a CUDA device"),
    (["bench", "soco", "--root", "r", "--device", "cuda:3"], "CUDA is not available on this machine"),
    (["train", "functional", "--data", "d", "--out", "o", "--device", "cuda"], "CUDA is not available on this machine"),
])
def test_cli_device_errors_exit_1_without_a_traceback(argv, message, capsys, monkeypatch):
    from correspondence.cli import main
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cuda_graphs_on_a_cpu_runtime_is_a_clear_error():
    from correspondence.backbones import create_backbone
    from correspondence.runtimes.torch_runtime import TorchRuntime
    with pytest.raises(DeviceError, match="CUDA graphs need a CUDA device"):
        TorchRuntime(create_backbone("test_vit_tiny").module, "cpu", cuda_graphs=True)

"""``soco export onnx`` / ``soco export head``: trace, write metadata, check, verify against PyTorch.

Only a model that passes reaches the requested path (see :mod:`.staging`): it is traced into a staging folder,
verified there, its verification record stored in its metadata (``soco.verification``), then moved to the
requested path, or to ``<stem>.rejected.onnx`` when it failed.

The TorchScript tracer (``dynamo=False``) is used on purpose: it needs no extra package (the dynamo exporter
needs onnxscript), gives a static-shape graph with opset-17 ``LayerNormalization`` nodes, and the batch axis can
stay dynamic. The image side is static: it fixes the grid and so the frozen positional embedding.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from correspondence.backbones.contract import OutputKind
from correspondence.backbones.registry import LoadedBackbone, get_spec
from correspondence.device import to_numpy
from correspondence.errors import ConfigError, InputError
from correspondence.preprocessing import PreprocessSettings, network_batch
from correspondence.runtimes.deps import import_onnx
from correspondence.runtimes.metadata import INPUT_NAME, PREFIX, output_names

from .metadata import backbone_metadata, head_props, state_dict_sha256, write_props, write_verification
from .modules import ExportableBackbone, ExportableHead
from .quantize import Quantization, check_precision, quantize
from .staging import Staging, finalise
from .verify import THRESHOLDS, Check, VerificationError, VerificationReport, check_onnx, parity_checks

MIN_OPSET = 17  # LayerNormalization is one ONNX op from opset 17 on


@dataclass(frozen=True)
class ExportResult:
    """``path``: where the model is now: the requested path when it passed verification, else its rejected name
    (``<stem>.rejected.onnx``, refused by every runtime). ``requested``: the path that was asked for."""

    path: Path
    report: VerificationReport
    report_path: Path
    props: dict[str, str]
    export_seconds: float
    requested: Path | None = None

    @property
    def deployed(self) -> bool:
        """True when the model passed and is at the requested path."""
        return self.report.passed


def _checker(path: Path, report: VerificationReport) -> bool:
    """The ONNX checker as the report's first check (a rejection fails the export with the checker's reason)."""
    try:
        check_onnx(path)
    except VerificationError as exc:
        report.checks.append(Check("onnx.checker (full_check) accepts the model", 0.0, 1.0, False))
        report.notes.append(str(exc))
        return False
    report.checks.append(Check("onnx.checker (full_check) accepts the model", 1.0, 1.0, True))
    return True


def check_size(size: int, patch: int, name: str) -> None:
    if size <= 0 or size % patch:
        lower, upper = max(patch, size // patch * patch), (size // patch + 1) * patch
        raise ConfigError(f"--size {size} is not a multiple of {name}'s patch size {patch}: the export has a static "
                          f"grid, so use {lower} or {upper}")


def _check_opset(opset: int) -> None:
    if opset < MIN_OPSET:
        raise ConfigError(f"opset {opset} is too old: opset >= {MIN_OPSET} keeps LayerNorm as one op "
                          "(TensorRT holds it in fp32 under fp16)")


def _trace(module: torch.nn.Module, args: tuple, out: Path, input_names: list[str], output_names_: list[str],
           dynamic_axes: dict, opset: int) -> None:
    import_onnx()
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks (constants by design)
        torch.onnx.export(module, args, str(out), dynamo=False, opset_version=opset, input_names=input_names,
                          output_names=output_names_, dynamic_axes=dynamic_axes, do_constant_folding=True)


def normalised_batch(images: Sequence[np.ndarray], size: int, loaded: LoadedBackbone) -> torch.Tensor:
    """The images as FeatureExtractor feeds them to a runtime (default preprocessing at ``size``)."""
    norm = loaded.spec.preprocessing
    batch, _ = network_batch(images, PreprocessSettings(size=size), loaded.spec.contract.patch_size, norm.mean,
                             norm.std)
    return batch.contiguous()


def run_onnx(path: Path, feeds: dict[str, np.ndarray], provider: str, report: VerificationReport
             ) -> list[np.ndarray]:
    """Run the exported model with ONNX Runtime, recording the provider in use and, for fp16 on the CPU,
    whether ONNX Runtime had to insert fp32 casts (then fp16 arithmetic is not what was measured)."""
    from correspondence.runtimes.onnx_runtime import create_session
    optimized = path.with_name(path.name + ".ort-optimized.onnx") if report.precision == "fp16" else None
    session = create_session(path, provider, optimized_model=optimized)
    report.candidate = f"onnxruntime {__import__('onnxruntime').__version__}, providers in use: " \
                       f"{', '.join(session.get_providers())}"
    outputs = session.run(None, feeds)
    if optimized is not None and optimized.is_file():
        onnx = import_onnx()
        before = sum(n.op_type == "Cast" for n in onnx.load(str(path)).graph.node)
        after = sum(n.op_type == "Cast" for n in onnx.load(str(optimized)).graph.node)
        optimized.unlink()
        report.details["cast_nodes"] = {"exported": before, "after_onnxruntime_optimisation": after}
        if after > before:
            report.notes.append(
                f"ONNX Runtime's {provider} provider lacks fp16 kernels for some ops and inserted {after - before} "
                "fp32 casts: this checks the fp16 weights and graph, not fp16 arithmetic as a GPU runs it - "
                "re-verify on the target (provider cuda/tensorrt, or the TensorRT engine build)")
    return [np.asarray(o, dtype=np.float32) for o in outputs]


def _trace_precision(trace: Callable[[Path], None], staged: Path, precision: str, quantization: Quantization | None,
                     calibration_feeds: Callable[[list[np.ndarray]], list[dict]], props: dict[str, str]) -> None:
    """Trace into ``staged``; for int8, trace fp32 beside it and quantise into ``staged`` (recorded in ``props``)."""
    if precision != "int8":
        trace(staged)
        return
    traced = staged.with_name(staged.stem + ".fp32" + staged.suffix)
    trace(traced)
    info = quantize(traced, staged, quantization or Quantization(), calibration_feeds)
    traced.unlink()
    props[PREFIX + "quantization"] = json.dumps(info)


def export_backbone(loaded: LoadedBackbone, size: int, out: str | Path, fp16: bool = False,
                    kind: OutputKind | str = OutputKind.LAST_RAW, layers: Sequence[int] = (-1,), opset: int = MIN_OPSET,
                    dynamic_batch: bool = True, provider: str = "cpu",
                    verify_images: tuple[np.ndarray, np.ndarray] | None = None,
                    log: Callable[[str], None] = print, precision: str | None = None,
                    quantization: Quantization | None = None) -> ExportResult:
    """Export ``loaded`` at ``size`` px to ``out`` and verify it; raises VerificationError if parity fails.

    ``precision``: fp32 | fp16 | int8 (default: fp16 when ``fp16``, else fp32); int8 is made by
    :func:`.quantize.quantize` (``quantization``: dynamic by default) from the fp32 graph."""
    from .inputs import image_pair

    precision = check_precision(precision or ("fp16" if fp16 else "fp32"))
    fp16 = precision == "fp16"
    contract = loaded.spec.contract
    kind = contract.check_kind(kind)
    check_size(size, contract.patch_size, loaded.spec.name)
    _check_opset(opset)
    resolved = contract.check_layers(layers) if kind is OutputKind.BLOCKS else (contract.num_blocks - 1,)
    out = Path(out)
    wrapper = ExportableBackbone(loaded, size, kind, resolved, fp16=fp16).eval()
    names = list(output_names(kind.value, resolved))
    log(f"[soco] exporting {loaded.spec.name} ({loaded.weights.kind} weights) at {size} px, {kind.value}"
        f"{' ' + str(list(resolved)) if kind is OutputKind.BLOCKS else ''}, {precision}"
        f"{' (' + (quantization or Quantization()).mode + ')' if precision == 'int8' else ''}, opset {opset} -> {out}")
    report = VerificationReport(str(out), f"PyTorch {torch.__version__} eager fp32 ({loaded.spec.name}, CPU)", "",
                                precision)
    meta = backbone_metadata(loaded, size, kind, tuple(resolved), precision, opset, "dynamic" if dynamic_batch else "1")
    props = meta.to_props()
    with Staging(out) as staged:
        start = time.perf_counter()
        dummy = torch.zeros(1, 3, size, size)
        axes = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}} if dynamic_batch else {}
        _trace_precision(lambda path: _trace(wrapper, (dummy,), path, [INPUT_NAME], names, axes, opset), staged,
                         precision, quantization,
                         lambda images: [{INPUT_NAME: to_numpy(normalised_batch([image], size, loaded), np.float32)}
                                         for image in images], props)
        write_props(staged, props)
        seconds = time.perf_counter() - start
        if _checker(staged, report):
            pair = verify_images or image_pair()
            batch = normalised_batch(pair, size, loaded)
            with torch.no_grad():  # the reference: the library's own module (dynamic pos-embed resize, fused attention)
                module = loaded.module.to("cpu").eval()
                reference = [to_numpy(o, np.float32) for o in module.forward_dense(batch, kind, resolved)]
            feed = np.ascontiguousarray(to_numpy(batch, np.float32))
            if dynamic_batch:
                candidate = run_onnx(staged, {INPUT_NAME: feed}, provider, report)
            else:
                parts = [run_onnx(staged, {INPUT_NAME: feed[i:i + 1]}, provider, report) for i in range(len(feed))]
                candidate = [np.concatenate(p) for p in zip(*parts)]
            checks, details = parity_checks(reference, candidate, names, report.precision)
            report.checks += checks
            report.details.update(details, size=size, grid=size // contract.patch_size, images="generated pair"
                                  if verify_images is None else "user images")
        stored: dict[str, str] = {}
        path, saved = finalise(staged, out, report, lambda p, r: stored.update(write_verification(p, props, r)), log)
    return ExportResult(path, report, saved, stored, seconds, out)


def export_head(checkpoint_path: str | Path, backbone: LoadedBackbone, size: int, out: str | Path,
                function: str | None = None, fp16: bool = False, opset: int = MIN_OPSET, provider: str = "cpu",
                verify_images: tuple[np.ndarray, np.ndarray] | None = None, stride: int = 4,
                log: Callable[[str], None] = print, precision: str | None = None,
                quantization: Quantization | None = None) -> ExportResult:
    """Export a functional head (function embedding as an input, or ``function`` baked in) and verify it on
    the backbone's real block features of an image pair. ``precision``: fp32 | fp16 | int8 (as for a backbone;
    static int8 calibrates on the backbone's block features of the calibration images)."""
    from correspondence.functional.checkpoint import HeadCheckpoint

    precision = check_precision(precision or ("fp16" if fp16 else "fp32"))
    fp16 = precision == "fp16"
    checkpoint_path = Path(checkpoint_path)
    if not checkpoint_path.with_suffix(".safetensors").is_file():
        raise InputError(f"head checkpoint {str(checkpoint_path)!r} does not exist")
    checkpoint = HeadCheckpoint.load(checkpoint_path)
    if checkpoint.backbone != backbone.spec.name:
        raise ConfigError(f"the head was trained on {checkpoint.backbone!r}, not {backbone.spec.name!r}")
    contract = get_spec(checkpoint.backbone).contract
    check_size(size, contract.patch_size, checkpoint.backbone)
    _check_opset(opset)
    layers = contract.check_layers(checkpoint.layers)
    head = checkpoint.head.eval()
    config = head.config
    grid_side = size // contract.patch_size
    text = checkpoint.function_embedding(function).float() if function else None
    if text is not None and text.numel() != config.text_dim:
        raise ConfigError(f"function embedding has {text.numel()} values, the head expects {config.text_dim}")
    wrapper = ExportableHead(head, text, fp16=fp16).eval()
    block_names = [f"block_{layer}" for layer in layers]
    input_names = block_names + ["grid"] + ([] if function else ["text"])
    outputs = ["embeddings"] + (["mask_logits"] if config.mask_head else [])
    out = Path(out)
    log(f"[soco] exporting functional head {checkpoint_path.name} ({checkpoint.backbone}, blocks {list(layers)}, "
        f"{'function ' + repr(function) + ' baked in' if function else 'text embedding as input'}, "
        f"{precision}) -> {out}")
    report = VerificationReport(str(out), f"PyTorch {torch.__version__} eager fp32 head on {backbone.spec.name} "
                                f"({backbone.weights.kind} weights) block features", "", precision)
    props = head_props(str(checkpoint_path), checkpoint.backbone, tuple(layers), grid_side, size, config.as_dict(),
                       function, checkpoint.text_encoder, precision, state_dict_sha256(head), input_names, outputs,
                       opset)

    def calibration_feeds(images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        feeds = []
        for image in images:
            inputs, _, _ = _head_inputs([image], backbone, head, checkpoint, text, function, size, stride, grid_side,
                                        layers)
            feeds.append(_head_feeds(inputs, block_names, function))
        return feeds

    with Staging(out) as staged:
        start = time.perf_counter()
        dummy = [torch.zeros(1, config.feature_dim, grid_side, grid_side) for _ in layers] + [torch.zeros(1, 16, 2)]
        if not function:
            dummy.append(torch.zeros(1, config.text_dim))
        axes = {name: {0: "batch"} for name in input_names}
        axes["grid"] = {0: "batch", 1: "points"}
        axes.update({"embeddings": {0: "batch", 1: "points"}, "mask_logits": {0: "batch", 1: "points"}})
        axes = {k: v for k, v in axes.items() if k in input_names or k in outputs}
        _trace_precision(lambda path: _trace(wrapper, tuple(dummy), path, input_names, outputs, axes, opset), staged,
                         precision, quantization, calibration_feeds, props)
        write_props(staged, props)
        seconds = time.perf_counter() - start
        if _checker(staged, report):
            _verify_head(staged, report, head, backbone, checkpoint, text, function, size, grid_side, stride, layers,
                         block_names, outputs, provider, verify_images)
        stored: dict[str, str] = {}
        path, saved = finalise(staged, out, report, lambda p, r: stored.update(write_verification(p, props, r)), log)
    return ExportResult(path, report, saved, stored, seconds, out)


def _verify_head(staged: Path, report: VerificationReport, head, backbone: LoadedBackbone, checkpoint, text,
                 function: str | None, size: int, grid_side: int, stride: int, layers: Sequence[int],
                 block_names: list[str], outputs: list[str], provider: str,
                 verify_images: tuple[np.ndarray, np.ndarray] | None) -> None:
    """The head against PyTorch on the backbone's real block features of the image pair (a stride-``stride``
    point grid): the embeddings' parity checks and, with a mask head, :func:`mask_logit_checks`."""
    from .inputs import image_pair

    pair = verify_images or image_pair()
    inputs, (emb, logits), text_note = _head_inputs(list(pair), backbone, head, checkpoint, text, function, size,
                                                    stride, grid_side, layers)
    report.reference += f", {text_note}"
    reference = [to_numpy(emb, np.float32)] + ([to_numpy(logits, np.float32)] if logits is not None else [])
    candidate = run_onnx(staged, _head_feeds(inputs, block_names, function), provider, report)
    checks, details = parity_checks(reference[:1], candidate[:1], outputs[:1], report.precision)
    report.checks += checks
    if logits is not None:
        checks, details["mask_logits"] = mask_logit_checks(reference[1], candidate[1], report.precision)
        report.checks += checks
    report.details.update(details, size=size, points=int(inputs[1].shape[1]))


def _head_inputs(images: list[np.ndarray], backbone: LoadedBackbone, head, checkpoint, text, function: str | None,
                 size: int, stride: int, grid_side: int, layers: Sequence[int]) -> tuple[tuple, tuple, str]:
    """The head's inputs for ``images`` (the backbone's block features, a stride-``stride`` point grid, the text
    embedding), the eager fp32 head's outputs on them, and which text embedding was used."""
    batch = normalised_batch(images, size, backbone)
    with torch.no_grad():
        blocks = backbone.module.to("cpu").eval().forward_dense(batch, OutputKind.BLOCKS, layers)
        points = _point_grid(size, stride, grid_side).expand(len(batch), -1, -1).contiguous()
        if text is not None:
            text_batch, text_note = text.reshape(1, -1).expand(len(batch), -1), f"baked function {function!r}"
        elif checkpoint.functions:
            name = sorted(checkpoint.functions)[0]
            text_batch, text_note = checkpoint.functions[name].float().reshape(1, -1).expand(len(batch), -1), \
                f"function {name!r} from the checkpoint's table"
        else:
            text_batch = torch.nn.functional.normalize(torch.randn(1, head.config.text_dim,
                                                                   generator=torch.Generator().manual_seed(0)), dim=-1)
            text_batch, text_note = text_batch.expand(len(batch), -1), "a seeded random unit text embedding"
        outputs = head.embed(head.fuse(list(blocks)), points, text_batch)
    return (blocks, points, text_batch), outputs, text_note


def _head_feeds(inputs: tuple, block_names: list[str], function: str | None) -> dict[str, np.ndarray]:
    blocks, points, text_batch = inputs
    feeds = {name: np.ascontiguousarray(to_numpy(b, np.float32)) for name, b in zip(block_names, blocks)}
    feeds["grid"] = np.ascontiguousarray(to_numpy(points, np.float32))
    if not function:
        feeds["text"] = np.ascontiguousarray(to_numpy(text_batch, np.float32))
    return feeds


MASK_LOGIT_SCALE_FLOOR = 1.0  # logits this small are undecided: their error is judged against 1, not against ~0


def mask_logit_checks(reference: np.ndarray, candidate: np.ndarray, precision: str) -> tuple[list[Check], dict]:
    """Mask-logit parity: the max abs error relative to the logit scale (max |reference|, at least 1) within the
    precision's ``max_relative_error``, and identical mask decisions (logit > 0) for at least the precision's
    ``argmax_agreement`` share of the points."""
    limits = THRESHOLDS[precision]
    if reference.shape != candidate.shape:
        return [Check(f"mask_logits: shape {tuple(candidate.shape)} == {tuple(reference.shape)}", 0.0, 1.0, False)], {}
    error = float(np.abs(reference.astype(np.float64) - candidate).max())
    scale = max(float(np.abs(reference).max()), MASK_LOGIT_SCALE_FLOOR)
    relative = error / scale
    same = (reference > 0) == (candidate > 0)
    agreement = float(same.mean())
    checks = [Check(f"mask_logits: max abs error / max(|reference|, 1) ({scale:.4g})", relative,
                    limits["max_relative_error"], bool(relative <= limits["max_relative_error"])),
              Check(f"mask_logits: identical mask decisions, logit > 0 ({same.size})", agreement,
                    limits["argmax_agreement"], bool(agreement >= limits["argmax_agreement"]))]
    return checks, {"max_abs_error": error, "scale": scale, "relative_error": relative,
                    "identical_decisions": int(same.sum()), "points": int(same.size)}


def _point_grid(size: int, stride: int, grid_side: int) -> torch.Tensor:
    """Centres of a ``stride``-px pixel grid in the head's sampling convention (the reference's: pixel index ``p``
    at ``p * 2 / size - 1``, read with ``align_corners=False``), as the functional inference samples the fused
    map; a cell spanning pixels ``[s g, s g + s)`` is read at pixel index ``s g + (s - 1) / 2``."""
    from correspondence.functional.model import pixel_grid
    centres = (torch.arange(size // stride, dtype=torch.float64) + 0.5) * stride - 0.5
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return pixel_grid(torch.stack([xs, ys], -1).reshape(1, -1, 2), size).float()

"""``soco match``: transfer named keypoints from a demo image to a live image."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_backbone_options, add_extraction_options, torch_runtime_options
from ..geometry2d import GEOMETRY_MODELS
from ..local_features import LOCAL_FEATURES
from ..transform_search import SEARCH_MODES


def add_matching_options(parser: argparse.ArgumentParser, refine_flag: str = "--no-refine") -> None:
    """How keypoints are matched (shared by ``soco match`` and ``soco transfer``, where ``--refine`` is the ICP
    step, so only ``--no-refine-keypoints`` turns keypoint refinement off); None = the protocol's value."""
    group = parser.add_argument_group("keypoint matching")
    group.add_argument("--method", default="argmax", choices=("argmax", "soft-argmax"))
    group.add_argument("--protocol", default="default", choices=("default", "soco"),
                       help="default: precise transfer (relative soft-argmax temperature, refinement on); soco: the "
                            "SOCO reference's matching (soft-argmax half-width 7, beta 0.02, no refinement)")
    group.add_argument("--window", type=int, default=None,
                       help="soft-argmax half-width in cells, a (2w+1)^2 window (default: 1; soco protocol: 7)")
    group.add_argument("--beta", type=float, default=None,
                       help="soft-argmax temperature (default: 0.1 x each map's score spread; soco protocol: 0.02)")
    group.add_argument("--temperature", default=None, choices=("relative", "absolute"),
                       help="beta relative to each map's score spread, or absolute (default: the protocol's)")
    group.add_argument("--refine-keypoints", dest="refine_keypoints", action="store_true", default=None,
                       help="refine each match at the original resolution (on with the default protocol)")
    group.add_argument(refine_flag, *(("--no-refine-keypoints",) if refine_flag != "--no-refine-keypoints" else ()),
                       dest="refine_keypoints", action="store_false", help="keep the coarse cell positions")
    group.add_argument("--refine-candidates", type=int, default=None,
                       help="coarse cells per keypoint refined and re-ranked by full-resolution correlation "
                            "(default: 1; 8 recovers wrong coarse cells under strong viewpoint changes)")
    group.add_argument("--refine-window", type=float, default=None,
                       help="refinement search half-width in live cells (default: 1)")
    group.add_argument("--geometry", default="none", choices=GEOMETRY_MODELS,
                       help="verify the matches with a robust model (same rigid object only): affine, homography "
                            "(planar or far objects), fundamental (3D: keeps the keypoints on their epipolar "
                            "lines), auto (homography or fundamental, by GRIC); when the data do not support a "
                            "model it is refused and no keypoint is accepted (default: %(default)s)")
    group.add_argument("--geometry-threshold", type=float, default=None,
                       help="model inlier distance in live px (default: 3 px refined, 0.75 cell coarse)")
    group.add_argument("--local-features", default=None, choices=LOCAL_FEATURES,
                       help="local features fused with the dense matches in the model (any --geometry but none): "
                            "rotation- and scale-invariant evidence at full resolution (default: sift)")
    group.add_argument("--no-photometric", dest="photometric", action="store_false", default=True,
                       help="keep a verified homography / affine map as fitted to the matches (default: refined by "
                            "ECC over the pixels its inliers span, kept only when the correlation rises and no "
                            "inlier's prediction moves more than 1 px of the coarser view)")
    group.add_argument("--search", default=None, choices=SEARCH_MODES,
                       help="test-time search of the coarse match over the live view's rotation (45 deg steps) and "
                            "scale (0.25-4x), the hypothesis chosen by the dense matches' geometric support; the "
                            "upright view is tried first and ends the search when well supported. auto (default): "
                            "rotation-scale with --geometry (same object), none without it (semantic transfer) "
                            "and under --protocol soco")


def matching_options(args: argparse.Namespace) -> dict:
    """The ``Matcher.create`` keyword arguments of :func:`add_matching_options`."""
    return {"method": args.method, "protocol": args.protocol, "window": args.window, "beta": args.beta,
            "temperature": args.temperature, "refine": args.refine_keypoints, "geometry": args.geometry,
            "geometry_threshold": args.geometry_threshold, "local_features": args.local_features,
            "search": args.search, **({} if args.photometric else {"photometric": False}),
            "refinement": {key: value for key, value in (("candidates", args.refine_candidates),
                                                         ("window_cells", args.refine_window)) if value is not None}
            or None}


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("match", help="find the demo's keypoints in a live image",
                            description="Find the demo's named keypoints in a live image; writes matches.json "
                                        "and overlay.png.")
    parser.add_argument("--demo", required=True, help="demo image")
    parser.add_argument("--demo-keypoints", required=True, help="JSON with {keypoints: [{name, xy}, ...]}")
    parser.add_argument("--live", required=True, help="live image")
    parser.add_argument("--live-mask", default=None, help="object mask of the live image (non-zero = object)")
    parser.add_argument("--demo-mask", default=None, help="object mask of the demo image (for the cycle check)")
    add_matching_options(parser)
    parser.add_argument("--max-labels", type=int, default=24,
                        help="keypoint names written on the overlay (the rest are dots; default: %(default)s)")
    parser.add_argument("--out", default="match_out", help="output folder (default: %(default)s)")
    add_backbone_options(parser)
    add_extraction_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..api import Matcher, as_image, as_keypoints, as_mask
    from ..io import write_json
    from ..preprocessing import to_rgb_array
    from ..viz import overlay_for_matches, save

    demo, live = as_image(args.demo), as_image(args.live)
    keypoints = as_keypoints(args.demo_keypoints)
    live_mask = as_mask(args.live_mask)
    matcher = Matcher.create(args.backbone, weights=args.weights, random_weights=args.random_weights, size=args.size,
                             pad=args.pad, size_policy=args.size_policy, convention=args.convention,
                             device=args.device, dtype=args.dtype, runtime=torch_runtime_options(args),
                             **matching_options(args))
    result = matcher(demo, keypoints, live, live_mask=live_mask, demo_mask=as_mask(args.demo_mask))
    out = Path(args.out)
    record = {"demo": str(args.demo), "live": str(args.live), "demo_keypoints": str(args.demo_keypoints),
              **result.as_dict()}
    write_json(out / "matches.json", record)
    backbone = result.settings["backbone"]
    matching = result.settings["matching"]
    geometry = result.geometry
    title = (f"{backbone['name']} ({backbone['weights']}) | {matching['method']}"
             f"{' + refined' if matching['refine'] else ''}"
             + (f" | {geometry.model}: {geometry.reason}" if geometry is not None else ""))
    demo_side = max(to_rgb_array(demo).shape[:2])
    cycle_px = demo_side / result.settings["grid"]  # back within one demo cell counts as a passed cycle check
    overlay = overlay_for_matches(demo, live, result.matches, title=title, live_mask=live_mask,
                                  cycle_threshold_px=cycle_px, max_labels=args.max_labels)
    save(overlay, out / "overlay.png")
    print(f"backbone: {backbone['name']} ({backbone['weights']}), image size {result.settings['effective_image_size']},"
          f" grid {result.settings['grid']}")
    for m in result.matches:
        print(f"  {m.name:24s} demo ({m.demo_xy[0]:7.1f}, {m.demo_xy[1]:7.1f}) -> live ({m.live_xy[0]:7.1f}, "
              f"{m.live_xy[1]:7.1f}) [{m.position}]  score {m.score:.3f}  mutual {'yes' if m.mutual else 'no '}  "
              f"cycle {m.cycle_distance_px:6.1f} px" + ("" if m.accepted else "  REJECTED"))
    if result.search is not None:
        found = result.search
        print(f"search: live = demo turned {found.degrees:g} deg, scaled {found.scale:.3g}x (support {found.support:.0%} "
              f"of the demo cells in view, {found.hypotheses_line()})")
    if geometry is not None:
        print(geometry_line(geometry, sum(m.accepted for m in result.matches), len(result.matches)))
    print(f"wrote {out / 'matches.json'} and {out / 'overlay.png'}")
    return 0


def geometry_line(geometry, accepted: int, total: int) -> str:
    """What the console says about the model: its support (the share of the evidence that agrees with it, the
    number that separates good models from bad), never the ratio of a fit to its own inliers."""
    if not geometry.success:
        return f"geometry ({geometry.requested}): refused, no keypoint accepted ({accepted} of {total}): {geometry.reason}"
    support = "" if geometry.support is None else (
        f"support {geometry.support:.0%} of the textured dense cells, " if geometry.model != "fundamental"
        else f"support {geometry.support:.0%} of the precise matches, ")
    return (f"geometry ({geometry.requested}): {geometry.model}, {support}{geometry.num_inliers} of "
            f"{geometry.num_matches} matches within {geometry.threshold_px:.2g} px; {accepted} of {total} keypoints "
            f"accepted")

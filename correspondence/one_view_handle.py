"""The handle turn (:mod:`~correspondence.handle_turn`) for a one-view demo: a mug, jug or kettle seen once agrees
with the live frame on its round body under any turn about its axis, so the one-view pose search either picks a turn
10-40 deg off (refused by the confirmation's handle rule, :func:`~correspondence.pose_confirmation.handle_match`) or
finds turns 25-45 deg apart that score alike and refuses them as ambiguous. On the bench's one-view +-180 deg rows
those were about half of all failures, and the live handle or spout, when the demo view saw it too, says where the
turn is.

:func:`handle_search` reads the search's choice again from the handle the way a multi-view demo's is read: level,
seat the body, scan the turn, polish (:func:`~correspondence.handle_turn.turn_by_handle`, on the demo view's own
points instead of the fused cloud). An ambiguous search is settled only when every rival (far from the turned pose)
lays the handle clearly worse (:meth:`~correspondence.handle_turn.HandleJudge.worse`); a search whose handle is hidden
in either view, or not seen well enough to be decisive, is returned as it is. The outcome is still judged by the
confirmation rules like any pose.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .alignment import rotation_error_deg
from .cloud_visibility import visible_mask
from .handle_turn import HandleTurnSettings, turn_by_handle
from .icp import IcpSettings
from .pose_search import LiveFrame, PoseSearchResult, PoseSearchSettings, score_pose
from .revolution import fit_revolution
from .view_pool import FusedFit

SOURCE_HANDLE = "+handle"  # appended to the chosen hypothesis' source when the handle turned it


def handle_search(search: PoseSearchResult, demo_points: np.ndarray, demo_descriptors, demo_colors,
                  inferred: np.ndarray | None, live: LiveFrame, settings: PoseSearchSettings, icp: IcpSettings | None,
                  up: tuple | None, handle: HandleTurnSettings | None = None) -> PoseSearchResult:
    """``search`` (a one-view pose search's result, poses demo -> live) with its choice's turn read from the round
    body's handle or spout (module doc); ``up`` = (the vertical in the demo camera, in the live camera)."""
    base = (search.transform if search.transform is not None else
            search.chosen.transform if search.ambiguous and search.chosen is not None else None)
    if up is None or base is None:
        return search
    seen = np.asarray(demo_points if inferred is None else demo_points[~inferred], dtype=np.float64)
    revolution = fit_revolution(seen, np.asarray(up[0], dtype=np.float64))
    if revolution is None:
        return search
    score = lambda T: score_pose(T, demo_points, demo_descriptors, live, settings, demo_colors, inferred)  # noqa: E731
    fitter = FusedFit(seen, live, lambda T: score(T).score, lambda p, T: visible_mask(p, T, live.intrinsics),
                      np.asarray(up[1], dtype=np.float64), icp=icp, revolution=revolution)
    judge = turn_by_handle(base, fitter, handle)
    if judge is None or not judge.decisive:
        return search
    T = judge.transform
    rivals = [h for h in search.rivals
              if rotation_error_deg(h.transform, T) >= settings.ambiguity_deg and not judge.worse(h.transform)]
    if search.ambiguous and rivals:
        return search
    if not search.ambiguous and not judge.scan.applied:
        return search
    chosen = search.chosen
    chosen = replace(chosen, transform=T, score=score(T),
                     source=chosen.source + (SOURCE_HANDLE if judge.scan.applied else ""))
    words = judge.scan.reason if judge.scan.applied else "the pose's turn stands"
    if search.ambiguous:
        words += (f"; the {len(search.rivals)} turn(s) that explained the frame as well lay the handle or spout "
                  f"clearly worse")
    return replace(search, transform=T, chosen=chosen, ambiguous=False, rivals=(), reason=f"ok: {words}")


__all__ = ["handle_search"]

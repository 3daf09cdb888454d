"""The node's inputs: subscriptions to the camera topics, pairing image / depth / mask by stamp, and each
synchronised set checked and converted into a :class:`~soco_ros.processor.Frame` for the worker.

:class:`InputsMixin` is one part of :class:`soco_ros.lifecycle.CorrespondenceNode`. It owns the subscriptions
(``_subs``, made at activate by :meth:`_subscribe_inputs`, destroyed at deactivate by :meth:`_unsubscribe_inputs`),
the synchroniser (``sync``), the resolved input topics, the latest camera intrinsics and prompt; it reads
``params`` and updates ``counts``, ``rejected`` and ``health``; a good frame goes to ``worker``. Callbacks only
convert and validate (``soco_ros.conversions``); a bad message is a throttled warning and a counted rejection,
never an exception out of a callback.

Two policies live here (docs/ros.md): the stamp policy before pairing (zero and far-future stamps refused, so one
bad clock cannot stop the node; the synchroniser's drops and re-arms reported by cause) and the frame policy
after it (depth and CameraInfo in the image's frame unless ``depth_registered``).
"""
from __future__ import annotations

from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from correspondence.errors import SocoError
from correspondence.segmentation import Prompt

from .compressed import compressed_depth_to_metres, compressed_to_rgb
from .conversions import (FrameError, camera_info_to_intrinsics, check_same_size, depth_to_metres, image_to_rgb,
                          mask_to_bool, stamp_to_ns)
from .processor import Frame
from .qos import sensor_overrides, sensor_qos
from .sync import ApproximateSync, Drop
from .worker import WorkItem


class InputsMixin:
    def _subscribe_inputs(self) -> str:
        """Activate: subscribe to the inputs and build the synchroniser; returns what was subscribed (for the log).
        Every input message passes :meth:`_input_callback` (the stamp policy) before it is paired."""
        p = self.params

        def qos():  # a fresh profile per subscription: rclpy's QoS overrides modify the profile they are given
            return sensor_qos(p["qos_reliability"], p["qos_depth"])

        inputs = ["image"] + (["depth"] if p["use_depth"] else []) + (["mask"] if p["use_mask"] else [])
        self._input_topics = {name: self._input_topic(name) for name in inputs}
        self._input_topics["camera_info"] = self.resolve_topic_name("camera_info")
        if p["use_prompt"]:
            self._input_topics["prompt"] = self.resolve_topic_name("prompt")
        types = {name: Image if self._transport(name) == "raw" else CompressedImage for name in inputs}
        use_mf = len(inputs) > 1 and p["sync_backend"] == "message_filters" and self._message_filters_available()
        overrides = sensor_overrides()
        # camera_info first: in one executor cycle its callback then runs before the image's (creation order)
        self._subs = [self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos(),
                                               qos_overriding_options=overrides)]

        def emit(*msgs):
            self._on_synced(dict(zip(inputs, msgs)))

        if use_mf:
            import message_filters

            self._filters = {name: message_filters.SimpleFilter() for name in inputs}
            self.sync = message_filters.ApproximateTimeSynchronizer([self._filters[n] for n in inputs],
                                                                    p["sync_queue_size"], p["sync_slop"])
            self.sync.registerCallback(emit)
        else:
            self.sync = ApproximateSync(inputs, p["sync_slop"], emit, p["sync_queue_size"],
                                        jump_s=p["stamp_jump_threshold"], on_drop=self._on_sync_drop,
                                        on_rearm=self._on_sync_rearm)
        self._subs += [self.create_subscription(types[name], self._input_topics[name], self._input_callback(name),
                                                qos(), qos_overriding_options=overrides) for name in inputs]
        if p["use_prompt"]:
            self._subs.append(self.create_subscription(PointStamped, "prompt", self._on_prompt, qos(),
                                                       qos_overriding_options=overrides))
        return (f"{', '.join(self._input_topics.values())} ({p['qos_reliability']}, sync "
                f"{'message_filters' if use_mf else 'built-in'}, slop {p['sync_slop']} s)")

    def _message_filters_available(self) -> bool:
        try:
            import message_filters  # noqa: F401
        except ImportError:
            self.get_logger().warning("[sync] message_filters is not importable; using the built-in "
                                      "approximate-time synchroniser")
            return False
        return True

    def _unsubscribe_inputs(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self.sync = None

    # ============================================================================================ stamp policy
    def _input_callback(self, name: str):
        def callback(msg) -> None:
            if name == "image":
                self.health.input()
            stamp_ns = stamp_to_ns(msg.header.stamp)
            if self._stamp_refused(name, stamp_ns):
                return
            sync = self.sync
            if isinstance(sync, ApproximateSync):
                sync.add(name, stamp_ns, msg)
            elif sync is not None:  # message_filters: its own drops are not reported (docs/ros.md)
                self._filters[name].signalMessage(msg)
        return callback

    def _stamp_refused(self, name: str, stamp_ns: int) -> bool:
        """The stamp policy before pairing: a zero stamp, or one more than ``max_future_stamp`` ahead of the node's
        clock (simulated time with ``use_sim_time``; not judged before the first /clock message), is refused with
        its reason, so it can neither pair nor move the synchroniser's "now" past every later frame."""
        topic = self._input_topics.get(name, name)
        if stamp_ns == 0:
            return self._refuse_stamp(name, "zero_stamp", f"{topic}: header.stamp is 0: the driver does not stamp "
                                      "its messages, so they can be neither paired nor aged (stamp them with the "
                                      "capture time)")
        limit = float(self.params["max_future_stamp"])
        now_ns = self.get_clock().now().nanoseconds
        if limit <= 0 or now_ns == 0:
            return False
        ahead = (stamp_ns - now_ns) / 1e9
        if ahead <= limit:
            return False
        sim = bool(self.get_parameter("use_sim_time").value)
        clock = "simulated time (/clock)" if sim else "system time"
        fix = "is /clock from the same source (the bag player's --clock)?" if sim else (
            "synchronise the camera's clock (chrony / PTP), or set use_sim_time for a bag")
        return self._refuse_stamp(name, "future_stamp", f"{topic}: stamp {stamp_ns / 1e9:.3f} s is {ahead:.3f} s "
                                  f"ahead of the node's clock ({clock}, {now_ns / 1e9:.3f} s); refused (max_future_stamp "
                                  f"{limit:g} s): {fix}")

    def _refuse_stamp(self, name: str, reason: str, message: str) -> bool:
        self._count(f"refused_{reason}")
        self.health.problem("rejected", reason, message)
        self.log.warn(reason, f"message refused: {message}", key=f"{reason}|{name}")
        return True

    def _on_sync_drop(self, drop: Drop) -> None:
        """Every message the synchroniser drops: counted by cause, and a throttled line per input and cause."""
        self._count(f"sync_{drop.cause}")
        topic = self._input_topics.get(drop.name, drop.name)
        stamp = f"{topic}: message stamped {drop.stamp_ns / 1e9:.3f} s dropped"
        if drop.cause == "out_of_order":
            message = (f"{stamp}: {drop.behind_ns / 1e9:.3f} s before the last paired set, so it can never pair "
                       "(it arrived late or out of order)")
        else:
            gaps = "; ".join(f"no {self._input_topics.get(other, other)} message queued" if gap is None else
                             f"nearest {self._input_topics.get(other, other)} {gap / 1e9:.3f} s away"
                             for other, gap in drop.gaps.items())
            message = (f"{stamp} without a partner within sync_slop {self.params['sync_slop']:g} s ({gaps}): is "
                       "every input published, and stamped from the same exposure? (or raise sync_slop)")
        self._last_sync_drop = message
        self.log.warn(f"sync:{drop.cause}", message, key=f"sync:{drop.cause}|{drop.name}")

    def _on_sync_rearm(self, name: str, stamp_ns: int, back_ns: int) -> None:
        self._count("sync_rearmed")
        topic = self._input_topics.get(name, name)
        self.log.warn("stamp_jump", f"{topic}: stamps jumped back {back_ns / 1e9:.3f} s (to {stamp_ns / 1e9:.3f} s: a "
                                    "looped bag or a clock reset); the synchroniser is re-armed (queues cleared) and "
                                    "serves the new stream", key="stamp_jump")

    def _transport(self, name: str) -> str:
        """raw, compressed or compressedDepth: how the input ``name`` arrives (the mask is always raw)."""
        return {"image": self.params["image_transport"], "depth": self.params["depth_transport"]}.get(name, "raw")

    def _input_topic(self, name: str) -> str:
        """The topic an input is read from: the (remapped) name itself, or image_transport's sub-topic of it
        (``<image>/compressed``, ``<depth>/compressedDepth``), as image_transport's subscribers resolve it."""
        resolved = self.resolve_topic_name(name)
        transport = self._transport(name)
        return resolved if transport == "raw" else f"{resolved}/{transport}"

    def _set_slop(self, slop: float) -> None:
        if isinstance(self.sync, ApproximateSync):
            self.sync.slop_s = slop
        else:  # message_filters
            from rclpy.duration import Duration

            self.sync.slop = Duration(seconds=slop)

    def _reject(self, reason: str, message: str) -> None:
        with self._state_lock:
            self.counts["rejected"] += 1
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.health.problem("rejected", reason, message)
        self.log.warn(reason, f"frame dropped: {message}")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        topic = self._input_topics.get("camera_info") or self.resolve_topic_name("camera_info")
        try:
            self._intrinsics = camera_info_to_intrinsics(msg, topic)
            self._intrinsics_frame = msg.header.frame_id
        except (FrameError, SocoError) as exc:
            with self._state_lock:
                self.rejected["camera_info"] = self.rejected.get("camera_info", 0) + 1
            keep = " (keeping the previous one)" if self._intrinsics is not None else ""
            self.log.warn("camera_info", f"camera_info rejected: {exc}{keep}")

    def _check_frames(self, msgs: dict, topics: dict[str, str]) -> None:
        """The frame policy: depth and camera_info must be in the image's frame (registered to it), unless
        ``depth_registered`` says they are under another name. Depth from another viewpoint would be lifted with
        the colour camera's intrinsics and give wrong 3D points, silently."""
        if self.params["depth_registered"]:
            return
        image_frame = msgs["image"].header.frame_id
        depth_frame = msgs["depth"].header.frame_id
        if depth_frame != image_frame:
            raise FrameError("frame_mismatch", f"{topics['depth']} is in frame {depth_frame!r} but {topics['image']} in "
                                               f"{image_frame!r}: depth must be registered to the colour image (same "
                                               "optical frame, same size) or its 3D points are wrong; with a RealSense "
                                               "enable align_depth (align_depth.enable:=true) and remap depth to "
                                               ".../aligned_depth_to_color/image_raw, or set depth_registered:=true if "
                                               "this depth is registered to the colour image under another frame name")
        info_topic = self._input_topics.get("camera_info", "camera_info")
        if self._intrinsics_frame != image_frame:
            raise FrameError("camera_info_frame", f"{info_topic} is for frame {self._intrinsics_frame!r} but "
                                                  f"{topics['image']} is in {image_frame!r}: the intrinsics must be the "
                                                  "colour image's (remap camera_info to the colour camera's "
                                                  "camera_info, e.g. /camera/camera/color/camera_info), or set "
                                                  "depth_registered:=true if they are")

    def _on_prompt(self, msg: PointStamped) -> None:
        try:
            self._prompt = Prompt(point=(msg.point.x, msg.point.y))
        except SocoError as exc:
            self.log.warn("prompt", f"{self._input_topics.get('prompt', 'prompt')}: prompt rejected: {exc}")

    def _on_synced(self, msgs: dict[str, Image]) -> None:
        with self._state_lock:
            self.counts["received"] += 1
        self.health.frame()
        image = msgs["image"]
        try:
            topics = {name: self._input_topics.get(name) or self._input_topic(name) for name in msgs}
            topic = topics["image"]
            if not str(image.header.frame_id).strip():
                raise FrameError("frame_id", f"{topic}: header.frame_id is empty; the matches, markers and the "
                                             "transform could not be placed in tf (set the camera driver's frame)")
            rgb = image_to_rgb(image, topic) if isinstance(image, Image) else compressed_to_rgb(image, topic)
            depth = mask = intrinsics = None
            if "depth" in msgs:
                reader = depth_to_metres if isinstance(msgs["depth"], Image) else compressed_depth_to_metres
                depth = reader(msgs["depth"], self.params["depth_scale"], topics["depth"])
                check_same_size(rgb, depth, "depth")
                intrinsics = self._intrinsics
                if intrinsics is None:
                    raise FrameError("no_camera_info", f"no valid CameraInfo received yet on "
                                                       f"{self._input_topics.get('camera_info', 'camera_info')} "
                                                       "(needed to lift depth)")
                if (intrinsics.width, intrinsics.height) != (rgb.shape[1], rgb.shape[0]):
                    raise FrameError("size_mismatch", f"{self._input_topics.get('camera_info', 'camera_info')} is "
                                                      f"for {intrinsics.width}x{intrinsics.height} but the image is "
                                                      f"{rgb.shape[1]}x{rgb.shape[0]}")
                self._check_frames(msgs, topics)
            if "mask" in msgs:
                mask = mask_to_bool(msgs["mask"], topics["mask"])
                check_same_size(rgb, mask, "mask")
                if not mask.any():
                    raise FrameError("empty_mask", "the mask is empty")
        except FrameError as exc:
            self._reject(exc.reason, str(exc))
            return
        except SocoError as exc:
            self._reject("input", str(exc))
            return
        stamp_ns = stamp_to_ns(image.header.stamp)
        frame = Frame(rgb, stamp_ns, image.header.frame_id, depth, intrinsics, mask, self._prompt)
        worker = self.worker
        if worker is not None and self._active:
            worker.submit(WorkItem(frame, stamp_ns / 1e9))
        self.capture.remember(frame)  # the latest synchronised frame, for ~/capture_demo


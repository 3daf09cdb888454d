"""The node's inputs: subscriptions to the camera topics, pairing image / depth / mask by stamp, and each
synchronised set checked and converted into a :class:`~soco_ros.processor.Frame` for the worker.

:class:`InputsMixin` is one part of :class:`soco_ros.lifecycle.CorrespondenceNode`. It owns the subscriptions
(``_subs``, made at activate by :meth:`_subscribe_inputs`, destroyed at deactivate by :meth:`_unsubscribe_inputs`),
the synchroniser (``sync``), the resolved input topics, the latest camera intrinsics and prompt; it reads
``params`` and updates ``counts``, ``rejected`` and ``health``; a good frame goes to ``worker``. Callbacks only
convert and validate (``soco_ros.conversions``); a bad message is a throttled warning and a counted rejection,
never an exception out of a callback.
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
from .sync import ApproximateSync
from .worker import WorkItem


class InputsMixin:
    def _subscribe_inputs(self) -> str:
        """Activate: subscribe to the inputs and build the synchroniser; returns what was subscribed (for the log)."""
        p = self.params

        def qos():  # a fresh profile per subscription: rclpy's QoS overrides modify the profile they are given
            return sensor_qos(p["qos_reliability"], p["qos_depth"])

        inputs = ["image"] + (["depth"] if p["use_depth"] else []) + (["mask"] if p["use_mask"] else [])
        self._input_topics = {name: self._input_topic(name) for name in inputs}
        types = {name: Image if self._transport(name) == "raw" else CompressedImage for name in inputs}
        backend = p["sync_backend"]
        use_mf = False
        if len(inputs) > 1 and backend in ("auto", "message_filters"):
            try:
                import message_filters  # noqa: F401

                use_mf = True
            except ImportError:
                if backend == "message_filters":
                    self.get_logger().warning("[sync] message_filters is not importable; using the built-in "
                                              "approximate-time synchroniser")
        overrides = sensor_overrides()
        # camera_info first: in one executor cycle its callback then runs before the image's (creation order)
        info_sub = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos(),
                                            qos_overriding_options=overrides)
        if use_mf:
            import message_filters

            subs = [message_filters.Subscriber(self, types[name], self._input_topics[name], qos_profile=qos(),
                                               qos_overriding_options=overrides) for name in inputs]
            self.sync = message_filters.ApproximateTimeSynchronizer(subs, p["sync_queue_size"], p["sync_slop"])
            self.sync.registerCallback(lambda *msgs: self._on_synced(dict(zip(inputs, msgs))))
            self._subs = list(subs)
        else:
            self.sync = ApproximateSync(inputs, p["sync_slop"], lambda *msgs: self._on_synced(dict(zip(inputs, msgs))),
                                        p["sync_queue_size"])
            self._subs = [self.create_subscription(types[name], self._input_topics[name], self._sync_callback(name),
                                                   qos(), qos_overriding_options=overrides) for name in inputs]
        self._subs.append(info_sub)
        if p["use_prompt"]:
            self._subs.append(self.create_subscription(PointStamped, "prompt", self._on_prompt, qos(),
                                                       qos_overriding_options=overrides))
        topics = [self._input_topics[name] for name in inputs] + [
            self.resolve_topic_name(name) for name in ["camera_info"] + (["prompt"] if p["use_prompt"] else [])]
        return (f"{', '.join(topics)} ({p['qos_reliability']}, sync {'message_filters' if use_mf else 'built-in'}, "
                f"slop {p['sync_slop']} s)")

    def _unsubscribe_inputs(self) -> None:
        for sub in self._subs:
            sub_obj = getattr(sub, "sub", sub)  # message_filters.Subscriber wraps the subscription
            self.destroy_subscription(sub_obj)
        self._subs = []
        self.sync = None

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9

    def _transport(self, name: str) -> str:
        """raw, compressed or compressedDepth: how the input ``name`` arrives (the mask is always raw)."""
        return {"image": self.params["image_transport"], "depth": self.params["depth_transport"]}.get(name, "raw")

    def _input_topic(self, name: str) -> str:
        """The topic an input is read from: the (remapped) name itself, or image_transport's sub-topic of it
        (``<image>/compressed``, ``<depth>/compressedDepth``), as image_transport's subscribers resolve it."""
        resolved = self.resolve_topic_name(name)
        transport = self._transport(name)
        return resolved if transport == "raw" else f"{resolved}/{transport}"

    def _sync_callback(self, name: str):
        def callback(msg: Image) -> None:
            if name == "image":
                self.health.input()
            sync = self.sync
            if sync is not None:
                sync.add(name, stamp_to_ns(msg.header.stamp), msg)
        return callback

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
        try:
            self._intrinsics = camera_info_to_intrinsics(msg)
        except (FrameError, SocoError) as exc:
            with self._state_lock:
                self.rejected["camera_info"] = self.rejected.get("camera_info", 0) + 1
            keep = " (keeping the previous one)" if self._intrinsics is not None else ""
            self.log.warn("camera_info", f"camera_info rejected: {exc}{keep}")

    def _on_prompt(self, msg: PointStamped) -> None:
        try:
            self._prompt = Prompt(point=(msg.point.x, msg.point.y))
        except SocoError as exc:
            self.log.warn("prompt", f"prompt rejected: {exc}")

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
                    raise FrameError("no_camera_info", "no valid camera_info received yet (needed with depth)")
                if (intrinsics.width, intrinsics.height) != (rgb.shape[1], rgb.shape[0]):
                    raise FrameError("size_mismatch", f"camera_info is for {intrinsics.width}x{intrinsics.height} "
                                                      f"but the image is {rgb.shape[1]}x{rgb.shape[0]}")
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


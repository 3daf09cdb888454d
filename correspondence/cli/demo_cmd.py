"""``soco demo capture``: one frame (ROS topics, a video device, or files) -> a demo folder; ``soco demo edit DIR``:
annotate it in the browser (mask, named keypoints or a functional part), try it on a live frame, save.

ROS code lives in :mod:`soco_ros` (the core never imports it by name): the topic capture and the node's pipeline
for "try" are reached with :func:`importlib.import_module` only when asked for."""
from __future__ import annotations

import argparse
import importlib
import threading
import webbrowser
from pathlib import Path

DEFAULT_TAXONOMY = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "functional_taxonomy"


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="capture a demo frame and annotate it in the browser (docs/demo_editor.md)")
    demo = parser.add_subparsers(dest="demo", required=True, metavar="ACTION")

    capture = demo.add_parser("capture", help="one frame (ROS topics, a video device or files) -> a demo folder",
                              description="Write rgb.png (+ depth.png in mm, intrinsics.json) to a new demo folder.")
    capture.add_argument("out", help="the demo folder to write (must not exist unless --overwrite)")
    source = capture.add_argument_group("source (one of --image, --video, --rgb)")
    source.add_argument("--image", help="ROS image topic (sensor_msgs/Image), e.g. /camera/color/image_raw")
    source.add_argument("--depth", help="ROS depth topic (16UC1 / 32FC1), paired with --image by stamp")
    source.add_argument("--camera-info", help="ROS camera_info topic")
    source.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the topics (default: 10)")
    source.add_argument("--slop", type=float, default=0.05, help="image/depth stamp tolerance, s (default: 0.05)")
    source.add_argument("--image-transport", default="raw", choices=("raw", "compressed"),
                        help="read <image>/compressed (image_transport) instead of the raw topic")
    source.add_argument("--depth-transport", default="raw", choices=("raw", "compressedDepth"),
                        help="read <depth>/compressedDepth (PNG) instead of the raw topic")
    source.add_argument("--video", help="video device (0, /dev/video2) or video file, read with OpenCV")
    source.add_argument("--skip", type=int, default=5, help="video: frames skipped while exposure settles (default: 5)")
    source.add_argument("--rgb", help="image file")
    source.add_argument("--depth-file", help="depth file (uint16 PNG x --depth-scale m, or .npy metres)")
    capture.add_argument("--intrinsics", help="intrinsics JSON {fx, fy, cx, cy, width, height} (files, video)")
    capture.add_argument("--depth-scale", type=float, default=0.001, help="metres per depth unit (default: mm)")
    capture.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    capture.set_defaults(handler=run_capture)

    edit = demo.add_parser("edit", help="annotate a demo folder in the browser (local web app on 127.0.0.1)")
    edit.add_argument("folder", help="demo folder (from soco demo capture, or any demo folder)")
    edit.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port; default: 8765)")
    edit.add_argument("--no-browser", action="store_true", help="do not open a browser (print the address only)")
    edit.add_argument("--params", help="node params file (config/soco.yaml): 'try' uses the node's settings from it")
    edit.add_argument("--backbone", default=None, help="override the node's backbone for 'try' (default: the "
                                                       "params' backbone, 'auto': DINOv2 when its weights resolve, "
                                                       "else daisy)")
    edit.add_argument("--image", help="ROS image topic for 'grab' in the page (with --depth, --camera-info)")
    edit.add_argument("--depth", help="ROS depth topic for 'grab'")
    edit.add_argument("--camera-info", help="ROS camera_info topic for 'grab'")
    edit.add_argument("--timeout", type=float, default=5.0, help="seconds 'grab' waits for the topics (default: 5)")
    edit.add_argument("--image-transport", default="raw", choices=("raw", "compressed"), help="as for capture")
    edit.add_argument("--depth-transport", default="raw", choices=("raw", "compressedDepth"), help="as for capture")
    edit.add_argument("--sam2", default="tiny", choices=("tiny", "small", "base_plus", "large"),
                      help="SAM 2.1 model for click segmentation when its weights resolve (default: %(default)s)")
    edit.add_argument("--sam2-weights", default=None, help="explicit SAM 2.1 checkpoint (else $SOCO_WEIGHTS_DIR, "
                                                          "the torch hub cache); without one: SAM, depth, GrabCut")
    edit.add_argument("--device", default="cpu", help="torch device for SAM / SAM 2 (default: %(default)s)")
    edit.add_argument("--taxonomy", default=str(DEFAULT_TAXONOMY) if DEFAULT_TAXONOMY.is_dir() else None,
                      help="functional taxonomy folder (*action2objects.json) whose actions extend the function "
                           "list (default: ../shared/data/functional_taxonomy when present)")
    edit.set_defaults(handler=run_edit)


def _ros(module: str):
    """A soco_ros module, imported only now (the core has no static import of it)."""
    from ..errors import MissingDependencyError
    try:
        return importlib.import_module(f"soco_ros.{module}")
    except ImportError as exc:
        raise MissingDependencyError(f"ROS topics need rclpy and the ROS message packages (pip install -e .[ros]): "
                                     f"{exc}") from None


def run_capture(args: argparse.Namespace) -> int:
    from ..demo_editor import capture
    from ..demo_editor.folder import write_frame
    from ..errors import ConfigError

    sources = [name for name in ("image", "video", "rgb") if getattr(args, name)]
    if len(sources) != 1:
        raise ConfigError("give exactly one source: --image TOPIC (ROS), --video DEVICE or --rgb FILE")
    if Path(args.out).exists() and not args.overwrite:
        raise ConfigError(f"{args.out!r} already exists (give another folder, or --overwrite)")
    if args.image:
        print(f"waiting up to {args.timeout:g} s for {', '.join(t for t in (args.image, args.depth, args.camera_info) if t)}")
        frame = _ros("capture").capture_from_topics(args.image, args.depth, args.camera_info, timeout_s=args.timeout,
                                                    slop_s=args.slop, depth_scale=args.depth_scale,
                                                    image_transport=args.image_transport,
                                                    depth_transport=args.depth_transport)
    elif args.video:
        frame = capture.from_video(args.video, args.skip, args.intrinsics)
    else:
        frame = capture.from_files(args.rgb, args.depth_file, args.depth_scale, args.intrinsics)
    folder = write_frame(args.out, frame, overwrite=args.overwrite)
    height, width = frame.rgb.shape[:2]
    parts = ["rgb"] + (["depth"] if frame.depth is not None else []) + (["intrinsics"] if frame.intrinsics else [])
    print(f"wrote {folder} ({width}x{height}: {', '.join(parts)}); next: soco demo edit {folder}")
    return 0


def run_edit(args: argparse.Namespace) -> int:
    from ..demo_editor.sam2_source import editor_mask_source
    from ..demo_editor.server import make_server
    from ..demo_editor.session import EditorSession
    from ..demo_spec import load_frame

    preview_module = _ros("preview")
    overrides = {"backbone": args.backbone} if args.backbone else {}
    preview = preview_module.NodePreview(preview_module.node_parameters(args.params, **overrides))
    grab = None
    if args.image:
        capture = _ros("capture")

        def grab():
            return capture.capture_from_topics(args.image, args.depth, args.camera_info, timeout_s=args.timeout,
                                               depth_scale=preview.params["depth_scale"],
                                               slop_s=preview.params["sync_slop"],
                                               image_transport=args.image_transport,
                                               depth_transport=args.depth_transport)
    mask_source, reason = editor_mask_source(load_frame(args.folder).depth, args.sam2, args.sam2_weights, args.device)
    session = EditorSession(args.folder, preview=preview, grab=grab, taxonomy_dir=args.taxonomy,
                            mask_source=mask_source, mask_reason=reason)
    server = make_server(session, args.port)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    print(f"soco demo editor for {session.folder} at {url} (segmentation: {session.segmenter.reason}); Ctrl+C stops",
          flush=True)
    if not args.no_browser:
        threading.Timer(0.5, webbrowser.open, (url,)).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0

"""Making a demo: capture a frame (files, a video device; ROS topics through :mod:`soco_ros.capture`), annotate it
in the browser (``soco demo edit``: mask, named keypoints or a functional part), try it on a live frame, save.

Everything here is ROS-free; the demo folder it writes is the one :func:`correspondence.demo_spec.load_demo` reads.
"""
